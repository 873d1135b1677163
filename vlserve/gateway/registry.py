"""What Triton serves, as the gateway sees it: deployed models, found from Triton itself and kept
current while Triton comes and goes.

A *deployed model* is the set of Triton models that share a name prefix (``clip_text_encoder``,
``clip_image_encoder``...; no prefix for the embedded default). Its identity (spec, fingerprint,
family, width, Matryoshka prefixes) is what its text encoder reports in ``MODEL_INFO``; its id is the
spec string, the ``model`` of every request. A watcher polls Triton's readiness every second and
rediscovers the models when Triton comes back (and every ``refresh_s`` while it is up), so a
restarted or redeployed Triton is picked up without restarting the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlserve.errors import InvalidInput, ModelUnavailable, NotFound, VLServeError
from vlserve.gateway.coalesce import Coalescer
from vlserve.serving.client import AsyncVLServeClient, Protocol

log = logging.getLogger("vlserve.gateway")

# Triton model kind (its name after the prefix) -> the capability it gives
KINDS = {"text_encoder": "embed_text", "image_encoder": "embed_image", "zero_shot_classifier": "classify",
         "detector": "detect", "pixel_text": "segment"}


@dataclass
class DeployedModel:
    id: str
    prefix: str
    info: dict[str, Any]
    triton_models: dict[str, str]  # kind -> Triton model name
    max_batch: dict[str, int]  # kind -> its max_batch_size
    client: AsyncVLServeClient = field(repr=False)
    coalesce: int = 0  # Triton requests in flight per embedding queue (0: each call its own request)
    on_rows: Callable[[str, int], None] | None = field(default=None, repr=False)  # (kind, rows) per embedding request
    _coalescers: dict[tuple[str, int | None], Coalescer] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        return str(self.info["fingerprint"])

    @property
    def dimensions(self) -> int:
        return int(self.info["embed_dim"])

    @property
    def matryoshka_dims(self) -> list[int] | None:
        dims = self.info.get("matryoshka_dims")
        return [int(d) for d in dims] if dims else None

    @property
    def allowed_dimensions(self) -> list[int]:
        """The Matryoshka prefixes (and the full width) when the model declares them; else 1..width."""
        if self.matryoshka_dims:
            return sorted({*(d for d in self.matryoshka_dims if d <= self.dimensions), self.dimensions})
        return list(range(1, self.dimensions + 1))

    @property
    def capabilities(self) -> list[str]:
        caps = [KINDS[k] for k in KINDS if k in self.triton_models]
        if "text_encoder" in self.triton_models and "image_encoder" in self.triton_models:
            caps += ["rank", "search"]
        return caps

    def check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is None or dimensions in self.allowed_dimensions:
            return
        allowed = self.allowed_dimensions
        shown = ", ".join(map(str, allowed)) if self.matryoshka_dims else f"1..{self.dimensions}"
        raise InvalidInput(f"dimensions {dimensions} is not served by model {self.id!r}: use one of {shown}"
                           + (" (its Matryoshka prefixes)" if self.matryoshka_dims else ""), field="dimensions")

    def require(self, kind: str) -> None:
        if kind not in self.triton_models:
            raise NotFound(f"model {kind!r} is not deployed")

    async def embed(self, kind: str, items: Sequence[Any], dimensions: int | None) -> np.ndarray:
        """Embeddings of ``items`` (texts for ``text_encoder``, image bytes for ``image_encoder``) from
        that Triton model, in chunks of its max batch; with ``coalesce``, concurrent calls for the same
        (kind, dimensions) share Triton requests (:mod:`vlserve.gateway.coalesce`)."""
        self.require(kind)
        client = self.client
        embed = client.embed_texts if kind == "text_encoder" else client.embed_images

        def call(chunk: list[Any]) -> Any:
            if self.on_rows is not None:
                self.on_rows(kind, len(chunk))
            return embed(chunk, dimensions)

        max_batch = self.max_batch.get(kind, 0)
        if self.coalesce and max_batch:  # a model without batching (max_batch_size 0) takes one request each
            key = (kind, dimensions)
            if key not in self._coalescers:
                self._coalescers[key] = Coalescer(call, max_batch, self.coalesce)
            return await self.batched(kind, self._coalescers[key], items)
        return await self.batched(kind, call, items)

    async def batched(self, kind: str, call: Any, items: Sequence[Any],
                      join: Callable[[list[Any]], Any] = np.concatenate) -> Any:
        """``call(chunk)`` over chunks of at most the Triton model's ``max_batch_size``, concurrently (its
        dynamic batcher merges them again), the chunks' results put together by ``join`` (default: arrays
        concatenated); an error's item is renumbered to the whole list."""
        size = max(1, self.max_batch.get(kind, 0) or len(items))

        async def one(start: int) -> Any:
            try:
                return await call(items[start:start + size])
            except VLServeError as e:
                if e.item is not None:
                    e.item += start
                raise

        if len(items) <= size:  # the usual case: one request, no task to schedule
            return await one(0)
        return join(list(await asyncio.gather(*(one(s) for s in range(0, len(items), size)))))


class Registry:
    def __init__(self, url: str, protocol: Protocol = "grpc", default_model: str | None = None,
                 refresh_s: float = 10.0, coalesce: int = 0,
                 on_rows: Callable[[str, int], None] | None = None) -> None:
        self.url = url
        self.coalesce = coalesce
        self.on_rows = on_rows
        self.protocol = protocol
        self.default_model = default_model
        self.refresh_s = refresh_s
        self.models: dict[str, DeployedModel] = {}
        self.triton_ready = False
        self.discovered = False
        self._clients: dict[str, AsyncVLServeClient] = {}  # by prefix; made in the event loop that uses them
        self._task: asyncio.Task[None] | None = None

    # ---- lookup ------------------------------------------------------------------------------------
    def get(self, name: str | None) -> DeployedModel:
        if not self.models:
            raise ModelUnavailable(f"no model is ready on Triton at {self.url} (down, or still loading)")
        if name is None:
            if self.default_model in self.models:
                return self.models[self.default_model]
            return next(iter(self.models.values()))
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not deployed; deployed: {', '.join(self.models)}", field="model")
        return model

    def by_fingerprint(self, fingerprint: str) -> DeployedModel | None:
        return next((m for m in self.models.values() if m.fingerprint == fingerprint), None)

    # ---- discovery ---------------------------------------------------------------------------------
    def _client(self, prefix: str) -> AsyncVLServeClient:
        if prefix not in self._clients:
            self._clients[prefix] = AsyncVLServeClient(self.url, self.protocol, prefix=prefix)
        return self._clients[prefix]

    @property
    def root(self) -> AsyncVLServeClient:
        """The client without prefix: readiness, the repository index, model configs."""
        return self._client("")

    async def refresh(self) -> None:
        """Rediscover the deployed models (raises :class:`ModelUnavailable` when Triton cannot be reached)."""
        groups: dict[str, dict[str, str]] = {}
        for name in await self.root.ready_models():
            for kind in KINDS:
                if name.endswith(kind):
                    groups.setdefault(name[: -len(kind)], {})[kind] = name
        models: dict[str, DeployedModel] = {}
        for prefix, kinds in sorted(groups.items()):
            if "text_encoder" not in kinds:
                log.warning("Triton models %s have no text encoder beside them; not served", sorted(kinds.values()))
                continue
            client = self._client(prefix)
            info = await client.describe()
            configs = await asyncio.gather(*(self.root.model_config(n) for n in kinds.values()))
            max_batch = {k: int(c.get("max_batch_size", 0) or 0) for k, c in zip(kinds, configs, strict=True)}
            model_id = str(info["spec"])
            if model_id in models:  # the same spec twice under two prefixes: the prefix tells them apart
                model_id = f"{prefix}{model_id}"
            models[model_id] = DeployedModel(model_id, prefix, info, kinds, max_batch, client,
                                              self.coalesce, self.on_rows)
        self.models = models
        self.discovered = True
        log.info("deployed models: %s", {m.id: m.fingerprint for m in models.values()} or "none")

    async def watch(self, poll_s: float = 1.0, on_change: Any = None) -> None:
        """Poll readiness forever; rediscover when Triton (re)appears and every ``refresh_s`` while up."""
        last_refresh = 0.0
        while True:
            try:  # a Triton that accepts connections but does not answer is not ready either
                ready = await asyncio.wait_for(self.root.ready(), timeout=5)
            except TimeoutError:
                ready = False
            due = time.monotonic() - last_refresh > self.refresh_s
            if ready and (not self.triton_ready or due or not self.discovered):
                try:
                    await self.refresh()
                    last_refresh = time.monotonic()
                except VLServeError as e:  # went away again, or a model failed to answer: next poll retries
                    log.warning("model discovery failed: %s", e)
                    ready = False
            if ready != self.triton_ready:
                log.warning("Triton at %s is %s", self.url, "ready" if ready else "not ready")
            self.triton_ready = ready
            if on_change is not None:
                on_change(ready)
            await asyncio.sleep(poll_s)

    def start(self, on_change: Any = None) -> None:
        self._task = asyncio.create_task(self.watch(on_change=on_change))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()
