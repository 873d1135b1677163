"""Model layer: one interface per capability (dual encoders, detectors), one module per backend,
one spec parser."""

from __future__ import annotations

from vlserve.models.base import DualEncoder, Runtime
from vlserve.models.detector import Detector, ImageFeatures
from vlserve.models.spec import ModelSpec, parse_spec


def load_dual_encoder(spec: str | ModelSpec, runtime: Runtime | None = None) -> DualEncoder:
    """Load any supported dual encoder from its spec string (see :mod:`vlserve.models.spec`)."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.backend == "hf":
        from vlserve.models.hf_backend import HFEncoder

        return HFEncoder(parsed, runtime)
    from vlserve.models.open_clip_backend import OpenClipEncoder

    return OpenClipEncoder(parsed, runtime)


def load_detector(spec: str | ModelSpec, runtime: Runtime | None = None) -> Detector:
    """Load an open-vocabulary detector (transformers OWL-ViT or OWLv2, chosen from the config's
    ``model_type``) from its spec string; any other model is :class:`~vlserve.errors.Unsupported`."""
    from vlserve.models.owl_backend import OwlDetector

    return OwlDetector(parse_spec(spec) if isinstance(spec, str) else spec, runtime)


__all__ = ["Detector", "DualEncoder", "ImageFeatures", "ModelSpec", "Runtime", "load_detector", "load_dual_encoder",
           "parse_spec"]
