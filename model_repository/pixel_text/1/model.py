"""vlserve pixel_text (Triton python backend); the adapter is vlserve.serving.backend_models.pixel_text."""

from vlserve.serving.backend_models.pixel_text import TritonPythonModel

__all__ = ["TritonPythonModel"]
