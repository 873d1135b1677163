"""Concurrent embedding requests merged into one Triton request (opportunistic batching).

Each HTTP request that embeds one text would otherwise be its own Triton request, and on Triton's
side a request costs far more than a row: the gRPC call, the python backend's per-request tensors and
responses (about 1.3 ms of CPU per single-text request with the toy model, against well under 0.1 ms
per extra row in a batch; benchmarks/results/gateway_load.json). So the gateway queues the calls for
one (model, Triton model, dimensions) and keeps at most ``slots`` Triton requests in flight for
them: a call that finds a slot free goes out at once (a lone request waits for nothing, there is no
timer), and calls that arrive while every slot is busy leave together, up to the model's
``max_batch_size`` rows, as soon as one frees. Triton's own dynamic batcher still merges what
arrives from elsewhere.

A call that fills a whole batch by itself (a large request's full chunks) goes at once, taking no
slot, so a big request is not sent chunk after chunk and small ones do not queue behind it.

Errors stay each request's own: an error naming an item (a corrupt image) fails only the request
that item came from (renumbered to its place there), and the others are sent again, each as its own
Triton request (so a second bad item among them costs no one else another round); any other error
(Triton down) fails every request of that call, each with its own copy, and an unexpected exception
becomes each caller's own internal error.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlserve.errors import VLServeError

Call = Callable[[list[Any]], Awaitable[np.ndarray]]


@dataclass(slots=True)
class _Waiting:
    items: Sequence[Any]
    future: asyncio.Future[np.ndarray]


class Coalescer:
    """``await coalescer(items)`` -> the rows ``call(items)`` would return, sharing Triton requests with
    concurrent callers. ``len(items)`` must not exceed ``max_batch`` (callers chunk larger lists)."""

    def __init__(self, call: Call, max_batch: int, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._call = call
        self.max_batch = max(1, max_batch)
        self.slots = slots
        self._busy = 0
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # Triton requests sent (tests read it; the metric is the registry's on_rows)

    async def __call__(self, items: Sequence[Any]) -> np.ndarray:
        if len(items) > self.max_batch:
            raise ValueError(f"{len(items)} items are over the batch of {self.max_batch}: chunk them first")
        if len(items) == self.max_batch:  # a full request has nothing to share: it goes at once, on no slot
            self.calls += 1
            return await self._call(list(items))
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(items, future))
        if self._busy < self.slots:
            self._busy += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)  # a reference, so the task is not collected while it runs
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while batch := self._take():
                await self._send(batch)
        finally:
            self._busy -= 1

    def _take(self) -> list[_Waiting]:
        """What waits, oldest first, up to ``max_batch`` rows (callers that gave up are dropped)."""
        batch: list[_Waiting] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled: the client went away
                self._queue.popleft()
                continue
            if batch and rows + len(head.items) > self.max_batch:
                break
            batch.append(self._queue.popleft())
            rows += len(head.items)
        return batch

    async def _send(self, batch: list[_Waiting]) -> None:
        """One Triton request for ``batch``; every caller in it is answered, whatever happens."""
        try:
            await self._answer(batch)
        except BaseException as e:
            cancelled = isinstance(e, asyncio.CancelledError)  # the gateway shutting down
            for w in batch:
                if cancelled:
                    w.future.cancel()
                else:  # a bug here or in the call: each caller raises its own error (answered as a 500)
                    _fail(w, e if len(batch) == 1 else _internal(e))
            if not isinstance(e, Exception):
                raise

    async def _answer(self, batch: list[_Waiting]) -> None:
        items = [x for w in batch for x in w.items] if len(batch) > 1 else list(batch[0].items)
        self.calls += 1
        try:
            out = await self._call(items)
        except VLServeError as e:
            culprit = _owner(batch, e.item) if len(batch) > 1 else None
            if culprit is None:
                for w in batch:
                    _fail(w, _copy(e, e.item) if len(batch) > 1 else e)
                return
            index, offset = culprit
            _fail(batch[index], _copy(e, e.item - offset if e.item is not None else None))
            # the others, each on its own: another bad item among them then costs only its own request
            await asyncio.gather(*(self._answer([w]) for k, w in enumerate(batch) if k != index))
            return
        if out is None or len(out) != len(items):
            raise VLServeError(f"Triton returned {0 if out is None else len(out)} rows for {len(items)} inputs")
        start = 0
        for w in batch:
            if not w.future.done():
                w.future.set_result(out[start:start + len(w.items)])
            start += len(w.items)


def _owner(batch: list[_Waiting], item: int | None) -> tuple[int, int] | None:
    """(index in ``batch``, first row) of the request that holds row ``item`` of the merged call."""
    if item is None:
        return None
    start = 0
    for k, w in enumerate(batch):
        if start <= item < start + len(w.items):
            return k, start
        start += len(w.items)
    return None


def _copy(e: VLServeError, item: int | None) -> VLServeError:
    """The same error (type, message, field) for one request: callers renumber ``item`` in place."""
    return type(e).rebuild(e.message, item=item, field=e.field)


def _internal(e: BaseException) -> VLServeError:
    """A caller's own internal error for an unexpected ``e`` shared by a merged request. Its message names
    ``e``, so the gateway's internal-error log says what went wrong (the client sees only "internal error")."""
    err = VLServeError(f"internal error in a merged Triton request: {e!r}")
    err.__cause__ = e
    return err


def _fail(w: _Waiting, e: BaseException) -> None:
    if not w.future.done():
        w.future.set_exception(e)
