"""The contract, importing no torch: pydantic request/response schemas (:mod:`.schemas`) and the
Triton models' tensors as data (:mod:`.tensors`). Transport code (the Triton client, the gateway)
depends on this package and on :mod:`vlserve.errors` only."""

from vlserve.api.tensors import TRITON_MODELS, ModelIO, TensorSpec

__all__ = ["TRITON_MODELS", "ModelIO", "TensorSpec"]
