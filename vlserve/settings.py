"""Settings in one place (environment variables prefixed ``VLSERVE_``), read by entrypoints only,
and the :class:`Runtime` they build for every entrypoint (CLI, Triton models, Ray actors).

Imports no torch: transport code and quick CLI commands read it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MAX_PIXELS = 64_000_000  # decompression-bomb limit, checked before decoding
CommaList = Annotated[list[str], NoDecode]  # from the environment as "a,b,c"


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
    milvus_token: SecretStr | None = Field(None, description="token for a Milvus server (user:password or an API "
                                                             "key), for indexes with backend milvus")

    # ---- the HTTP gateway (vlserve.gateway); every limit is per request ------------------------------
    gateway_host: str = Field("127.0.0.1", description="address the gateway binds (loopback by default)")
    gateway_port: int = Field(8080, ge=0, le=65535)
    triton_url: str = Field("127.0.0.1:8001", description="host:port of the Triton endpoint the gateway calls")
    triton_protocol: Literal["grpc", "http"] = "grpc"
    api_keys: SecretStr = Field(SecretStr(""), description="comma-separated API keys; set: every route but "
                                                           "/healthz needs `Authorization: Bearer KEY`")
    api_keys_file: Path | None = Field(None, description="a file of API keys, one per line (added to api_keys)")
    cors_origins: CommaList = Field(default_factory=list, description="origins allowed by CORS (none: closed)")
    max_body_bytes: int = Field(32 * 2**20, ge=1024, description="request body size")
    max_image_bytes: int = Field(16 * 2**20, ge=1, description="one encoded image, after base64 decoding")
    max_images_per_request: int = Field(64, ge=1)
    max_texts_per_request: int = Field(256, ge=1)
    max_labels_per_request: int = Field(1000, ge=1, description="labels or descriptor classes of one request")
    max_text_chars: int = Field(4096, ge=1, description="one text, label, descriptor or query")
    max_k: int = Field(1000, ge=1, le=10_000, description="search results per query (k)")
    max_in_flight: int = Field(64, ge=1, description="requests the gateway works on at once; more get 429")
    embed_coalesce: int = Field(1, ge=0, le=64, description="Triton requests in flight per embedding queue; concurrent "
                                                      "embedding calls wait and share the next (0: each its own)")
    retry_after_s: int = Field(1, ge=1, description="the Retry-After of 429 and 503 answers")
    url_fetch: bool = Field(False, description="accept http(s) image URLs (fetched by the gateway)")
    url_allowed_hosts: CommaList = Field(default_factory=list, description="hosts URLs may name (exact names)")
    url_timeout_s: float = Field(5.0, gt=0)

    # ---- the Gradio front end (vlserve.ui), a client of the gateway -----------------------------------
    ui_port: int = Field(7860, ge=0, le=65535, description="port of the web UI (`vlserve serve` starts it)")
    ui_gateway_url: str | None = Field(None, description="the gateway the UI calls (default: this machine's, "
                                                         "at gateway_port)")
    ui_api_key: SecretStr = Field(SecretStr(""), description="the key the UI sends to the gateway, server-side "
                                                             "(default: the first of api_keys)")

    @field_validator("cors_origins", "url_allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def api_key_list(self) -> list[str]:
        """Every configured API key: ``api_keys`` (comma-separated) plus the lines of ``api_keys_file``."""
        keys = [k.strip() for k in self.api_keys.get_secret_value().split(",")]
        if self.api_keys_file is not None:
            keys += [line.strip() for line in self.api_keys_file.read_text().splitlines()]
        return [k for k in keys if k and not k.startswith("#")]

    def ui_key(self) -> str | None:
        """The API key the UI's server side sends to the gateway (none when auth is off)."""
        return self.ui_api_key.get_secret_value() or next(iter(self.api_key_list()), None)

    def runtime(self, device: str | None = None, precision: str | None = None, max_batch: int | None = None,
                max_image_pixels: int | None = None) -> Runtime:
        """The runtime these settings describe; an argument given (not None) takes precedence."""
        return Runtime(device=device or self.device, precision=precision or self.precision,
                       max_batch=self.max_batch if max_batch is None else max_batch,
                       max_image_pixels=self.max_image_pixels if max_image_pixels is None else max_image_pixels)
