"""vlserve image_encoder (Triton python backend); the adapter is vlserve.serving.backend_models.image_encoder."""

from vlserve.serving.backend_models.image_encoder import TritonPythonModel

__all__ = ["TritonPythonModel"]
