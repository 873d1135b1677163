"""What the routes share: the settings, the deployed models, the indexes, image inputs and the
per-request limits (each refusal names the setting that sets it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from vlserve.errors import InvalidInput
from vlserve.gateway.body import FormReader, read_body
from vlserve.gateway.images import ImageResolver
from vlserve.gateway.indexes import IndexService
from vlserve.gateway.metrics import Metrics
from vlserve.gateway.registry import DeployedModel, Registry
from vlserve.settings import Settings

M = TypeVar("M", bound=BaseModel)


@dataclass
class Limits:
    max_images: int
    max_texts: int
    max_labels: int
    max_text_chars: int
    max_k: int

    @classmethod
    def of(cls, s: Settings) -> Limits:
        return cls(s.max_images_per_request, s.max_texts_per_request, s.max_labels_per_request, s.max_text_chars,
                   s.max_k)

    def texts(self, texts: Sequence[str], field: str, items: Sequence[int] | None = None,
              most: int | None = None, what: str = "texts", setting: str = "VLSERVE_MAX_TEXTS_PER_REQUEST") -> None:
        most = self.max_texts if most is None else most
        if len(texts) > most:
            raise InvalidInput(f"{len(texts)} {what} are over the limit of {most} per request ({setting})",
                               field=field)
        for k, text in enumerate(texts):
            item = items[k] if items is not None else k
            if not text.strip():
                raise InvalidInput("empty text", field=field, item=item)
            if len(text) > self.max_text_chars:
                raise InvalidInput(f"text of {len(text)} characters is over the limit of {self.max_text_chars} "
                                   "(VLSERVE_MAX_TEXT_CHARS)", field=field, item=item)

    def labels(self, labels: Sequence[str], field: str = "labels") -> None:
        self.texts(labels, field, most=self.max_labels, what="labels", setting="VLSERVE_MAX_LABELS_PER_REQUEST")

    def descriptors(self, descriptors: dict[str, list[str]]) -> None:
        self.labels(list(descriptors), "descriptors")
        for cls, items in descriptors.items():
            self.texts(items, "descriptors", what=f"descriptors of {cls!r}")

    def images(self, count: int, field: str) -> None:
        if count > self.max_images:
            raise InvalidInput(f"{count} images are over the limit of {self.max_images} per request "
                               "(VLSERVE_MAX_IMAGES_PER_REQUEST)", field=field)

    def k(self, k: int) -> None:
        if k > self.max_k:
            raise InvalidInput(f"k={k} is over the limit of {self.max_k} (VLSERVE_MAX_K)", field="k")


@dataclass
class Gateway:
    settings: Settings
    registry: Registry
    indexes: IndexService
    images: ImageResolver
    limits: Limits
    metrics: Metrics

    @property
    def ready(self) -> bool:
        return self.registry.triton_ready and bool(self.registry.models) and self.indexes.loaded


def gateway(request: Request) -> Gateway:
    state: Gateway = request.app.state.gateway
    return state


async def model_request(request: Request, schema: type[M], form: FormReader | None = None
                        ) -> tuple[Gateway, M, DeployedModel]:
    """How a model-bound route starts: the gateway, the request's validated body, and the deployed model it
    names (its ``model`` field; default: the deployment's)."""
    gw = gateway(request)
    body = await read_body(request, schema, form)
    return gw, body, gw.registry.get(getattr(body, "model", None))


def one_of(request: object, names: Sequence[str]) -> str:
    """The one field of ``names`` the request sets (an error naming them all otherwise)."""
    given = [n for n in names if getattr(request, n) is not None]
    if len(given) != 1:
        listed = ", ".join(names)
        raise InvalidInput(f"give exactly one of {listed}" + (f" (got {', '.join(given)})" if given else ""),
                           field=given[1] if len(given) > 1 else None)
    return given[0]
