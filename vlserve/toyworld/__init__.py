"""The toy world: procedural scenes with captions, boxes and masks, and the tiny model trained on it."""
