"""The gateway's request coalescer: concurrent calls merged, rows back to their callers, errors kept apart."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vlserve.errors import InvalidInput, ModelUnavailable
from vlserve.gateway.coalesce import Coalescer


class Backend:
    """Embeds an int n as the row [n, n]; records each batch; can hold calls open or reject an item."""

    def __init__(self, bad: int | None = None, down: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.bad, self.down = bad, down

    async def __call__(self, items: list[int]) -> np.ndarray:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.down:
            raise ModelUnavailable("Triton is down")
        if self.bad in items:
            raise InvalidInput("bad text", item=items.index(self.bad))
        return np.array([[x, x] for x in items], np.float32)


def test_calls_that_wait_go_together_and_each_gets_its_own_rows() -> None:
    async def main() -> tuple[list[np.ndarray], Backend, Coalescer]:
        backend = Backend()
        backend.gate.clear()  # the first call stays in flight while the others arrive
        co = Coalescer(backend, max_batch=64, max_in_flight=1)
        first = asyncio.ensure_future(co([0]))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(co([i, i + 100])) for i in range(1, 6)]
        await asyncio.sleep(0)
        backend.gate.set()
        return [await first, *[await r for r in rest]], backend, co

    rows, backend, co = asyncio.run(main())
    assert backend.batches == [[0], [1, 101, 2, 102, 3, 103, 4, 104, 5, 105]]  # 6 callers, 2 Triton calls
    assert co.calls == 2 and co.in_flight == 0
    assert rows[0].tolist() == [[0, 0]]
    for i, r in enumerate(rows[1:], start=1):
        assert r[:, 0].tolist() == [i, i + 100]


def test_a_merged_call_never_exceeds_the_models_max_batch() -> None:
    async def main() -> Backend:
        backend = Backend()
        backend.gate.clear()
        co = Coalescer(backend, max_batch=4, max_in_flight=1)
        tasks = [asyncio.ensure_future(co([i, i])) for i in range(6)]
        await asyncio.sleep(0)
        backend.gate.set()
        await asyncio.gather(*tasks)
        return backend

    assert [len(b) for b in asyncio.run(main()).batches] == [2, 4, 4, 2]


def test_a_bad_input_fails_only_its_caller_and_the_others_are_sent_again() -> None:
    async def main() -> list[object]:
        backend = Backend(bad=7)
        backend.gate.clear()
        co = Coalescer(backend, max_batch=64, max_in_flight=1)
        first = asyncio.ensure_future(co([1]))
        await asyncio.sleep(0)
        tasks = [asyncio.ensure_future(co(x)) for x in ([2, 3], [4, 7], [5])]
        await asyncio.sleep(0)
        backend.gate.set()
        return await asyncio.gather(first, *tasks, return_exceptions=True)

    first, a, bad, b = asyncio.run(main())
    assert isinstance(bad, InvalidInput) and bad.item == 1  # its own second item, not the merged call's
    assert a[:, 0].tolist() == [2, 3] and b[:, 0].tolist() == [5] and first[:, 0].tolist() == [1]


def test_an_error_about_the_whole_call_reaches_every_caller_and_the_next_call_works() -> None:
    async def main() -> tuple[list[object], np.ndarray]:
        backend = Backend(down=True)
        co = Coalescer(backend, max_batch=64, max_in_flight=1)
        out = await asyncio.gather(*(co([i]) for i in range(3)), return_exceptions=True)
        backend.down = False
        return out, await co([9])

    out, after = asyncio.run(main())
    assert all(isinstance(e, ModelUnavailable) for e in out)
    assert after.tolist() == [[9, 9]]


def test_a_caller_that_gave_up_does_not_break_the_others() -> None:
    async def main() -> np.ndarray:
        backend = Backend()
        backend.gate.clear()
        co = Coalescer(backend, max_batch=64, max_in_flight=1)
        first = asyncio.ensure_future(co([1]))
        await asyncio.sleep(0)
        gone = asyncio.ensure_future(co([2]))
        kept = asyncio.ensure_future(co([3]))
        await asyncio.sleep(0)
        gone.cancel()
        backend.gate.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(main()).tolist() == [[3, 3]]
