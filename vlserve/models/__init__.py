"""Model layer: the dual-encoder interface, one module per backend, one spec parser."""

from __future__ import annotations

from vlserve.models.base import DualEncoder, Runtime
from vlserve.models.spec import ModelSpec, parse_spec


def load_dual_encoder(spec: str | ModelSpec, runtime: Runtime | None = None) -> DualEncoder:
    """Load any supported dual encoder from its spec string (see :mod:`vlserve.models.spec`)."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.backend == "hf":
        from vlserve.models.hf_backend import HFEncoder

        return HFEncoder(parsed, runtime)
    from vlserve.models.open_clip_backend import OpenClipEncoder

    return OpenClipEncoder(parsed, runtime)


__all__ = ["DualEncoder", "ModelSpec", "Runtime", "load_dual_encoder", "parse_spec"]
