"""Honest offline behaviour for hub-hosted weights.

Hub names go through the libraries' own download and cache code. When the hub cannot be reached
(``HF_HUB_OFFLINE=1``, or a 2-second connection probe fails), loading runs in the hub library's
offline mode: a warm cache still works, a cold one fails at once instead of retrying for a minute.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from vlserve.errors import ModelUnavailable, Unsupported

if TYPE_CHECKING:
    from vlserve.models.spec import ModelSpec

PROBE_TIMEOUT_S = 2.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=4)
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return _reachable(url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80))


@contextlib.contextmanager
def cache_only_unless_reachable() -> Iterator[bool]:
    """Within the block, hub libraries only read their cache when the hub is unreachable."""
    online = hub_reachable()
    if online:
        yield True
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield False
    finally:
        constants.HF_HUB_OFFLINE = before


def unavailable(spec: str, cause: BaseException) -> ModelUnavailable:
    return ModelUnavailable(
        f"cannot load weights for model spec {spec!r}: the hub is unreachable or offline and the weights are "
        f"not in the local cache ({type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''}). "
        "Provide weights one of these ways: a local folder (open_clip:local-dir:/path or hf:/path), a checkpoint "
        "file (open_clip:/path/ckpt.safetensors?arch=ARCH), or a warm cache (HF_HOME / HF_HUB_CACHE) populated "
        "on a machine with hub access."
    )


def load_transformers(spec: ModelSpec, classes: Mapping[str, str], what: str, parts: tuple[Any, ...]
                      ) -> tuple[Any, Any, list[Any]]:
    """(config, model, [part, ...]) for an ``hf:`` spec, read from its folder or the hub cache.

    ``classes`` maps each model type this loader serves to its transformers class name; a config of
    any other type is :class:`~vlserve.errors.Unsupported`, naming ``what`` the caller serves.
    ``parts`` are ``from_pretrained`` factories (``AutoTokenizer``, ``AutoProcessor``...).
    """
    import transformers
    from transformers import AutoConfig

    source = spec.local_dir or spec.hub_id
    assert source is not None
    with cache_only_unless_reachable() as online:
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=not online)
        except (OSError, ValueError) as e:
            raise unavailable(spec.raw, e) from e
        if config.model_type not in classes:
            raise Unsupported(f"model spec {spec.raw!r}: model_type {config.model_type!r} is not {what}; "
                              f"supported model types: {', '.join(classes)}", field="model")
        try:
            model = getattr(transformers, classes[config.model_type]).from_pretrained(
                source, local_files_only=not online)
            loaded = [part.from_pretrained(source, local_files_only=not online) for part in parts]
        except (OSError, ValueError) as e:
            raise unavailable(spec.raw, e) from e
    return config, model, loaded
