"""vlserve text_encoder (Triton python backend); the adapter is vlserve.serving.backend_models.text_encoder."""

from vlserve.serving.backend_models.text_encoder import TritonPythonModel

__all__ = ["TritonPythonModel"]
