"""Concurrent embedding calls merged into one Triton request (request coalescing).

Under load, every one-text ``/v1/embeddings`` request would otherwise be its own gRPC call, and for a
small model Triton spends more on a call (the request itself, the python backend's per-request work)
than the model spends on one text. A :class:`Coalescer` keeps at most ``max_in_flight`` calls to one
Triton model (at one ``dimensions``) in flight; calls that arrive meanwhile wait and go together in the
next request, up to the model's ``max_batch_size``. A call that finds a free slot goes at once, so an
idle gateway adds no delay; the rows come back to each caller in its own order.

Errors stay each caller's own: when Triton names one bad input, the caller that sent it gets the error
(its item renumbered to its own list) and the others are sent again without it; an error about the
whole call (Triton down, a timeout) reaches every caller in it.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from vlserve.errors import VLServeError

Call = Callable[[list[Any]], Awaitable[Any]]
_Waiting = tuple[list[Any], "asyncio.Future[np.ndarray]"]


class Coalescer:
    def __init__(self, call: Call, max_batch: int, max_in_flight: int = 2) -> None:
        self.call = call
        self.max_batch = max(1, max_batch)
        self.max_in_flight = max(1, max_in_flight)
        self.in_flight = 0
        self.calls = 0  # Triton requests sent (for tests and metrics)
        self._queue: deque[_Waiting] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, items: Sequence[Any]) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append((list(items), future))
        self._pump()
        return await future

    def _pump(self) -> None:
        while self._queue and self.in_flight < self.max_in_flight:
            group = [self._queue.popleft()]
            size = len(group[0][0])
            while self._queue and size + len(self._queue[0][0]) <= self.max_batch:
                size += len(self._queue[0][0])
                group.append(self._queue.popleft())
            group = [(items, f) for items, f in group if not f.done()]  # callers gone (client disconnected)
            if not group:
                continue
            self.in_flight += 1
            task = asyncio.ensure_future(self._run(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, group: list[_Waiting]) -> None:
        try:
            self.calls += 1
            try:
                out = np.asarray(await self.call([x for items, _ in group for x in items]))
            except VLServeError as e:
                self._fail(group, e)
                return
            except asyncio.CancelledError:
                for _, future in group:
                    future.cancel()
                raise
            except Exception as e:  # whatever it is, every caller in the call hears of it
                for _, future in group:
                    if not future.done():
                        future.set_exception(e)
                return
            start = 0
            for items, future in group:
                if not future.done():
                    future.set_result(out[start:start + len(items)])
                start += len(items)
        finally:
            self.in_flight -= 1
            self._pump()

    def _fail(self, group: list[_Waiting], error: VLServeError) -> None:
        if error.item is None or len(group) == 1:
            for _, future in group:
                if not future.done():
                    future.set_exception(copy.copy(error))
            return
        start, owner = 0, None
        retry: list[_Waiting] = []
        for items, future in group:
            if start <= error.item < start + len(items):
                owner = future
                mine = copy.copy(error)
                mine.item = error.item - start
                if not future.done():
                    future.set_exception(mine)
            else:
                retry.append((items, future))
            start += len(items)
        if owner is None:  # an item outside the call: not one caller's fault
            for _, future in retry:
                if not future.done():
                    future.set_exception(copy.copy(error))
            return
        self._queue.extendleft(reversed(retry))  # first in line again, in their order
