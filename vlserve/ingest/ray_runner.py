"""The Ray runner: the same stages on Ray Data, for when one machine is not enough.

    items --map_batches(decode, CPU tasks)--> pixels --map_batches(EncoderActor, one per GPU/CPU slot)-->
    embeddings --iter_batches--> ShardWriter on the driver (shard files + checkpoint, as locally)

Decoding runs as stateless tasks spread over the cluster; each encoder actor loads the model once
and checks its fingerprint against the driver's, so every worker provably embeds with the same
weights. The driver alone writes the index (SQLite has one writer), committing a shard as soon as
all its rows are back, so a crash loses only shards in flight, exactly as with the local runner.
Locally (tests) a Ray instance is started and shut down; ``--ray-address`` joins a cluster.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from vlserve.errors import MissingExtra, ModelUnavailable
from vlserve.ingest.encoder import Decoded, Encoded, Preprocessor, decode, encode_batch
from vlserve.ingest.reader import SourceItem
from vlserve.ingest.shards import ShardPlan, ShardWriter

if TYPE_CHECKING:
    from vlserve.models.base import DualEncoder
    from vlserve.settings import Runtime

log = logging.getLogger("vlserve.ingest")


def _decode_batch(batch: dict[str, np.ndarray], pre: Preprocessor, shape: tuple[int, ...],
                  known: np.ndarray) -> dict[str, np.ndarray]:
    """Ray task: read + hash + preprocess a batch; flags rows whose content is already indexed."""
    n = len(batch["key"])
    pixels = np.zeros((n, *shape), np.float32)
    digest, reason, skip = [], [], np.zeros(n, bool)
    for i in range(n):
        row = {k: batch[k][i] for k in ("key", "signature", "path", "offset", "size", "meta")}
        item = SourceItem.from_row({**row, "captions": []})
        d = decode(item, 0, i, pre)
        digest.append(d.digest)
        reason.append(d.reason)
        if d.ok and d.pixels is not None:
            pixels[i] = d.pixels.numpy()
            skip[i] = bool(np.isin(d.id, known))
    return {"shard": batch["shard"], "pos": batch["pos"], "captions": batch["captions"],
            "digest": np.array(digest, dtype=object), "reason": np.array(reason, dtype=object),
            "known": skip, "pixels": pixels}


class EncoderActor:
    """Ray actor: holds the model, embeds new rows' pixels and captions."""

    def __init__(self, spec: str, runtime: Runtime, fingerprint: str, captions: bool) -> None:
        from vlserve.models import load_dual_encoder

        self.encoder = load_dual_encoder(spec, runtime)  # the driver's runtime, built from its settings
        if self.encoder.fingerprint != fingerprint:
            raise ModelUnavailable(f"Ray worker loaded {spec!r} with fingerprint {self.encoder.fingerprint}, "
                                   f"the driver has {fingerprint}: the workers see different weights")
        self.captions = captions

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["pos"])
        dim = self.encoder.embed_dim
        todo = [i for i in range(n) if not batch["reason"][i] and not batch["known"][i]]
        emb = np.zeros((n, dim), np.float32)
        texts = np.array([b""] * n, dtype=object)
        caps_out = np.array(["[]"] * n, dtype=object)
        if todo:
            caps = [json.loads(batch["captions"][i]) if self.captions else [] for i in todo]
            out = encode_batch(self.encoder, torch.from_numpy(np.ascontiguousarray(batch["pixels"][todo])), caps)
            for i, e in zip(todo, out, strict=True):
                emb[i] = e.image
                texts[i] = np.ascontiguousarray(e.text, np.float32).tobytes()
                caps_out[i] = json.dumps(e.captions)
        encoded = np.zeros(n, bool)
        encoded[todo] = True
        return {"shard": batch["shard"], "pos": batch["pos"], "digest": batch["digest"], "reason": batch["reason"],
                "encoded": encoded, "emb": emb, "text_emb": texts, "captions": caps_out}


def run_ray(plans: Sequence[ShardPlan], encoder: DualEncoder, writer: ShardWriter, *, actors: int | None,
            batch_size: int, captions: bool, progress: bool, desc: str, address: str | None,
            num_cpus: int | None) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingExtra("ray", "ray") from None
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        _run(ray, plans, encoder, writer, actors, batch_size, captions, progress, desc)
    finally:
        if started:
            ray.shutdown()


def _run(ray: Any, plans: Sequence[ShardPlan], encoder: DualEncoder, writer: ShardWriter, actors: int | None,
         batch_size: int, captions: bool, progress: bool, desc: str) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    by_seq = {p.seq: p for p in plans}
    rows = [{"shard": p.seq, "pos": j, **it.to_row(), "captions": json.dumps(list(it.captions))}
            for p in plans for j, it in enumerate(p.items)]
    gpus = 1 if torch.cuda.is_available() and encoder.device.type == "cuda" else 0
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // max(batch_size, 1)))
    # decode tasks ask for a different CPU share than the actors, so Ray keeps the stages apart (not fused
    # into the actor): decoding overlaps encoding on other cores, as in the local runner
    ds = ds.map_batches(_decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=0.5,
                        fn_kwargs={"pre": Preprocessor(encoder), "shape": (3, *encoder.image_size),
                                   "known": writer.index.meta.all_ids()})
    ds = ds.map_batches(EncoderActor, batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors or 1), num_gpus=gpus, num_cpus=0 if gpus else 1,
                        fn_constructor_kwargs={"spec": encoder.spec.raw, "runtime": encoder.runtime,
                                               "fingerprint": encoder.fingerprint, "captions": captions})
    partial: dict[int, tuple[list[Decoded], dict[int, Encoded]]] = {}
    dim = encoder.embed_dim
    with tqdm(total=len(rows), desc=desc, unit="img", disable=not progress, smoothing=0.05) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["pos"])):
                seq, pos = int(batch["shard"][i]), int(batch["pos"][i])
                d = Decoded(seq, pos, str(batch["digest"][i]), None, str(batch["reason"][i]))
                done, encoded = partial.setdefault(seq, ([], {}))
                done.append(d)
                if d.ok and not writer.is_duplicate([d.id])[0] and batch["encoded"][i]:
                    caps = json.loads(batch["captions"][i])
                    text = np.frombuffer(batch["text_emb"][i], np.float32).reshape(len(caps), dim)
                    encoded[pos] = Encoded(batch["emb"][i].copy(), caps, text.copy())
                plan = by_seq[seq]
                if len(done) == len(plan.items):
                    writer.commit(plan, done, encoded)
                    del partial[seq]
            bar.update(len(batch["pos"]))
            s = writer.stats
            bar.set_postfix(added=s.added, dup=s.duplicates, unreadable=s.unreadable, refresh=False)
