"""The Milvus side of vlserve's vocabulary: FAISS factory strings as Milvus index parameters, index
names as collection names, and ``--where`` filters as Milvus boolean expressions (with the metadata
database's semantics). Pure functions, no client: :mod:`vlserve.retrieval.milvus_collection` uses
them against a live Milvus."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from vlserve.errors import InvalidInput

MAX_NLIST = 65_536  # Milvus's largest IVF nlist
MAX_TEXT = 8_192  # VARCHAR bytes kept of a source or caption (filters compare the stored prefix)


def milvus_index(factory: str, lite: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(index params, search params) of the Milvus index standing for a FAISS factory string."""
    f = factory.replace(" ", "")
    if f == "Flat":
        return {"index_type": "FLAT", "params": {}}, {}
    if m := re.fullmatch(r"HNSW(\d+)(,Flat)?", f):
        return {"index_type": "HNSW", "params": {"M": int(m.group(1)), "efConstruction": 200}}, {"ef": 128}
    # Milvus builds an index per sealed segment and caps nlist at 65,536: the size rule's nlist for a
    # whole billion-vector set is clipped to it
    if m := re.fullmatch(r"IVF(\d+),Flat", f):
        return {"index_type": "IVF_FLAT", "params": {"nlist": min(int(m.group(1)), MAX_NLIST)}}, {"nprobe": 64}
    if m := re.fullmatch(r"IVF(\d+),SQ8", f):
        return {"index_type": "IVF_SQ8", "params": {"nlist": min(int(m.group(1)), MAX_NLIST)}}, {"nprobe": 64}
    if m := re.fullmatch(r"IVF(\d+),PQ(\d+)(x\d+)?(np)?", f):
        if lite:
            raise InvalidInput(f"factory {factory!r}: Milvus Lite has no IVF_PQ index (it has FLAT, IVF_FLAT, "
                               "IVF_SQ8 and HNSW); use one of those factories or a Milvus server")
        return {"index_type": "IVF_PQ", "params": {"nlist": min(int(m.group(1)), MAX_NLIST), "m": int(m.group(2)),
                                                   "nbits": 8}}, {"nprobe": 64}
    raise InvalidInput(f"factory {factory!r} has no Milvus counterpart; use Flat, HNSW<M>, IVF<n>,Flat, "
                       "IVF<n>,SQ8 or IVF<n>,PQ<m>")


def search_params(params: str, base: dict[str, Any]) -> dict[str, Any]:
    """The manifest's FAISS-style knobs (``nprobe=64,efSearch=128``) as Milvus search params."""
    out = dict(base)
    for part in filter(None, params.split(",")):
        key, _, value = part.partition("=")
        out[{"efSearch": "ef"}.get(key, key)] = int(value)
    return out


def collection_name(index: str, kind: str) -> str:
    """A Milvus collection name (letters, digits, underscores) for an index's ``images`` or ``texts``."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", index)
    return f"vlserve_{safe}_{kind}"


def _literal(value: Any) -> str:
    """A Milvus expression literal: JSON's, with non-ASCII text as itself (Milvus refuses \\u escapes)."""
    return json.dumps(value, ensure_ascii=False)


def clip_text(text: str) -> str:
    """``text`` cut to ``MAX_TEXT`` UTF-8 bytes (Milvus counts VARCHAR length in bytes)."""
    raw = text.encode()
    return text if len(raw) <= MAX_TEXT else raw[:MAX_TEXT].decode("utf-8", "ignore")


def filter_expression(filters: Sequence[tuple[str, str, Any]], texts: bool = False) -> str | None:
    """``parse_filters`` output as a Milvus boolean expression over the scalar fields, or None when a
    filter needs the metadata database (``content_hash``, or an item ``id`` on the captions collection).

    The semantics are SQLite's in the metadata store: ``source``/``caption``/``id`` are columns, any
    other field is a key of the metadata object; a key an item lacks matches no comparison (not even
    ``!=``), as SQL's NULL does."""
    parts = []
    for field, op, value in filters:
        mop = "==" if op == "=" else op
        if field == "content_hash" or (field == "id" and texts):
            return None
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return None  # null, NaN, Infinity: no Milvus literal; SQLite answers (nothing matches)
        if field == "id":
            if isinstance(value, bool) or not isinstance(value, int):
                return None
            parts.append(f"id {mop} {value}")
        elif field in ("source", "caption"):
            text = _literal(clip_text(value if isinstance(value, str) else json.dumps(value)))
            # SQL's NULL caption (none given) is stored as "": it matches no caption comparison
            parts.append(f"(source {mop} {text})" if field == "source"
                         else f'((caption != "") and (caption {mop} {text}))')
        else:
            key = f"meta[{json.dumps(field)}]"
            # SQL's NULL matches no comparison, != included; servers before 2.4 let != match a missing key
            cmp = f"({key} {mop} {_literal(value)})"
            parts.append(f"((exists {key}) and {cmp})" if mop == "!=" else cmp)
    return " and ".join(parts)
