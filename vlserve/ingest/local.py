"""The local runner: decode + preprocess in worker processes (a torch ``DataLoader``), encode in
batches in this process while the workers prepare the next batches, commit shards as they finish."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vlserve.ingest.encoder import Decoded, Encoded, Preprocessor, decode, encode_batch
from vlserve.ingest.shards import ShardPlan, ShardWriter

if TYPE_CHECKING:
    from vlserve.models.base import DualEncoder


def default_workers() -> int:
    """One decoding process per core beyond the one encoding, at least one, at most eight."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class _Items(Dataset[Decoded]):
    def __init__(self, plans: Sequence[ShardPlan], pre: Preprocessor) -> None:
        self.flat = [(p.seq, j, item) for p in plans for j, item in enumerate(p.items)]
        self.pre = pre

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, i: int) -> Decoded:
        seq, j, item = self.flat[i]
        return decode(item, seq, j, self.pre)


def _batches(plans: Sequence[ShardPlan], batch_size: int) -> list[list[int]]:
    """Consecutive batches that never straddle two shards."""
    out, start = [], 0
    for p in plans:
        for b in range(0, len(p.items), batch_size):
            out.append(list(range(start + b, start + min(b + batch_size, len(p.items)))))
        start += len(p.items)
    return out


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def _as_list(batch: list[Decoded]) -> list[Decoded]:
    return batch


def run_local(plans: Sequence[ShardPlan], encoder: DualEncoder, writer: ShardWriter, *, workers: int,
              batch_size: int, captions: bool, progress: bool, desc: str) -> None:
    """Process ``plans`` (the shards not yet checkpointed) and commit each as soon as it is complete."""
    by_seq = {p.seq: p for p in plans}
    dataset = _Items(plans, Preprocessor(encoder))
    loader: DataLoader[Decoded] = DataLoader(
        dataset, batch_sampler=_batches(plans, batch_size), num_workers=workers, collate_fn=_as_list,
        prefetch_factor=4 if workers else None, worker_init_fn=_one_thread if workers else None,
        multiprocessing_context="fork" if workers else None)
    partial: dict[int, tuple[list[Decoded], dict[int, Encoded]]] = {}
    with tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, smoothing=0.05) as bar:
        for batch in loader:
            plan = by_seq[batch[0].shard]
            done, encoded = partial.setdefault(plan.seq, ([], {}))
            ok = [d for d in batch if d.ok]
            new = [d for d, dup in zip(ok, writer.is_duplicate([d.id for d in ok]), strict=True) if not dup]
            if new:
                pixels = torch.stack([d.pixels for d in new if d.pixels is not None])
                caps = [plan.items[d.pos].captions if captions else () for d in new]
                for d, e in zip(new, encode_batch(encoder, pixels, caps), strict=True):
                    encoded[d.pos] = e
            for d in batch:
                d.pixels = None
            done.extend(batch)
            if len(done) == len(plan.items):
                writer.commit(plan, done, encoded)
                del partial[plan.seq]
            bar.update(len(batch))
            s = writer.stats
            bar.set_postfix(added=s.added, dup=s.duplicates, unreadable=s.unreadable, refresh=False)
