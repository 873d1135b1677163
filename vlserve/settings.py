"""Settings in one place (environment variables prefixed ``VLSERVE_``), read by entrypoints only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # the settings module stays importable without torch (transport code reads it)
    from vlserve.models.base import Runtime

DEFAULT_MAX_PIXELS = 64_000_000  # decompression-bomb limit, checked before decoding


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VLSERVE_", extra="ignore")

    model: str = Field("toy", description="model spec string (see `vlserve models`)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: str = Field("auto", description="auto | fp32 | fp16 | bf16")
    max_batch: int = Field(32, ge=1, le=4096)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_labels: int = Field(10_000, ge=1, description="largest label set one classification may use")
    cache_dir: Path = Field(Path.home() / ".cache" / "vlserve", description="text-embedding cache and heads")
    index_dir: Path = Field(Path("index"), description="where `vlserve index` keeps indexes (one folder each)")
    log_level: str = "INFO"

    def runtime(self) -> Runtime:
        from vlserve.models.base import Runtime

        return Runtime(device=self.device, precision=self.precision, max_batch=self.max_batch,
                       max_image_pixels=self.max_image_pixels)
