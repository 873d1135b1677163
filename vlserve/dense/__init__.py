"""Pixel-text score maps: training-free dense CLIP embeddings (MaskCLIP, SCLIP, ClearCLIP)."""
