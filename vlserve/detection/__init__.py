"""Open-vocabulary detection (OWL-ViT, OWLv2): boxes for text queries or example images.

:class:`~vlserve.detection.engine.ObjectDetector` is the entry point; the Triton ``detector``
model calls it through :class:`~vlserve.detection.service.DetectionService`.
"""

from vlserve.detection.engine import ObjectDetector
from vlserve.detection.postprocess import Detection, DetectOptions, ImageDetections
from vlserve.detection.queries import MAX_QUERIES, QuerySet

__all__ = ["MAX_QUERIES", "DetectOptions", "Detection", "ImageDetections", "ObjectDetector", "QuerySet"]
