"""vlserve zero_shot_classifier (Triton python backend); the adapter is vlserve.serving.backend_models.zero_shot_classifier."""

from vlserve.serving.backend_models.zero_shot_classifier import TritonPythonModel

__all__ = ["TritonPythonModel"]
