"""Settings in one place (environment variables prefixed ``VLSERVE_``), read by entrypoints only,
and the :class:`Runtime` they build for every entrypoint (CLI, Triton models, Ray actors).

Imports no torch: transport code and quick CLI commands read it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_PIXELS = 64_000_000  # decompression-bomb limit, checked before decoding


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs. ``device="auto"``: CUDA (fp16) when present, else CPU fp32."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | fp16 | bf16
    max_batch: int = 32
    max_image_pixels: int = DEFAULT_MAX_PIXELS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VLSERVE_", extra="ignore")

    model: str = Field("toy", description="model spec string (see `vlserve models`)")
    detector_model: str | None = Field(None, description="detector spec (an OWL-ViT / OWLv2 checkpoint); the Triton "
                                                         "detector model is deployed only when this is set")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: str = Field("auto", description="auto | fp32 | fp16 | bf16")
    max_batch: int = Field(32, ge=1, le=4096)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_labels: int = Field(10_000, ge=1, description="largest label set one classification may use")
    cache_dir: Path = Field(Path.home() / ".cache" / "vlserve", description="text-embedding cache and heads")
    index_dir: Path = Field(Path("index"), description="where `vlserve index` keeps indexes (one folder each)")

    def runtime(self, device: str | None = None, precision: str | None = None, max_batch: int | None = None,
                max_image_pixels: int | None = None) -> Runtime:
        """The runtime these settings describe; an argument given (not None) takes precedence."""
        return Runtime(device=device or self.device, precision=precision or self.precision,
                       max_batch=self.max_batch if max_batch is None else max_batch,
                       max_image_pixels=self.max_image_pixels if max_image_pixels is None else max_image_pixels)
