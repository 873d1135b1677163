"""The gateway's embedding coalescer on its own: concurrent calls share requests, each caller gets its own
rows, an error stays with the request it belongs to. The live stack (tests/integration/gateway) checks
the same through the real Triton."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from vlserve.errors import InvalidInput, ModelUnavailable, VLServeError
from vlserve.gateway.coalesce import Coalescer


class Backend:
    """Stands in for a Triton embedding model: row i of a request is [value of item i], after a short wait;
    an item equal to ``bad`` is refused with an error naming its place in the request."""

    def __init__(self, bad: Any = None, down: bool = False) -> None:
        self.requests: list[list[Any]] = []
        self.bad = bad
        self.down = down

    async def __call__(self, items: list[Any]) -> np.ndarray:
        self.requests.append(list(items))
        await asyncio.sleep(0.01)
        if self.down:
            raise ModelUnavailable("cannot reach Triton")
        if self.bad in items:
            raise InvalidInput("not a decodable image", field="image", item=items.index(self.bad))
        return np.array([[float(x)] for x in items], np.float32)


async def _all(co: Coalescer, requests: list[list[Any]]) -> list[Any]:
    return await asyncio.gather(*(co(r) for r in requests), return_exceptions=True)


def test_concurrent_calls_share_requests_and_each_gets_its_own_rows() -> None:
    backend = Backend()
    co = Coalescer(backend, max_batch=8, slots=1)
    requests = [[i] for i in range(19)] + [[100, 101, 102]]
    out = asyncio.run(_all(co, requests))
    for request, rows in zip(requests, out, strict=True):
        assert rows.tolist() == [[float(x)] for x in request]
    # all twenty were waiting by the time the one slot's task ran: they left in order, at most 8 rows a
    # request and never a request split between two Triton requests
    assert [len(r) for r in backend.requests] == [8, 8, 6]
    assert [x for r in backend.requests for x in r] == [x for r in requests for x in r]


def test_a_lone_call_is_sent_at_once_as_it_is() -> None:
    backend = Backend()
    co = Coalescer(backend, max_batch=8, slots=2)
    assert asyncio.run(co([3, 4])).tolist() == [[3.0], [4.0]]
    assert backend.requests == [[3, 4]] and co.calls == 1


def test_slots_bound_the_requests_in_flight() -> None:
    in_flight = peak = 0

    async def call(items: list[Any]) -> np.ndarray:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return np.zeros((len(items), 1), np.float32)

    co = Coalescer(call, max_batch=4, slots=2)
    asyncio.run(_all(co, [[i] for i in range(30)]))
    assert peak == 2 and co.calls < 30


def test_a_bad_item_fails_only_its_own_request_renumbered() -> None:
    backend = Backend(bad=-1)
    co = Coalescer(backend, max_batch=16, slots=1)
    requests = [[0], [1, 2], [3, -1, 4], [5]]
    out = asyncio.run(_all(co, requests))
    err = out[2]
    assert isinstance(err, InvalidInput) and err.item == 1 and err.field == "image"  # its place in ITS request
    for k in (0, 1, 3):
        assert out[k].tolist() == [[float(x)] for x in requests[k]]
    # merged and refused; then the others again, each on its own (a second bad item would cost only its owner)
    assert backend.requests[0] == [0, 1, 2, 3, -1, 4, 5]
    assert sorted(backend.requests[1:]) == [[0], [1, 2], [5]]


def test_two_bad_requests_cost_the_good_ones_one_round_more_at_most() -> None:
    backend = Backend(bad=-1)
    co = Coalescer(backend, max_batch=64, slots=1)
    requests = [[i] for i in range(10)] + [[-1], [-1, 20]]
    out = asyncio.run(_all(co, requests))
    assert [isinstance(o, InvalidInput) for o in out] == [False] * 10 + [True, True]
    assert out[11].item == 0
    assert len(backend.requests) == 1 + len(requests) - 1  # the merged one, then each but the first culprit


def test_an_error_of_the_whole_call_reaches_every_caller_as_its_own_copy() -> None:
    co = Coalescer(Backend(down=True), max_batch=16, slots=1)
    out = asyncio.run(_all(co, [[i] for i in range(5)]))
    assert all(isinstance(e, ModelUnavailable) for e in out)
    assert len({id(e) for e in out[1:]}) == 4  # merged callers each get a copy: renumbering one leaves the rest
    out[1].item = 7
    assert out[2].item is None


def test_an_unexpected_failure_answers_every_caller_with_its_own_error() -> None:
    async def broken(items: list[Any]) -> Any:
        await asyncio.sleep(0.01)
        return None  # e.g. a Triton model without the EMBEDDING output

    async def raising(items: list[Any]) -> Any:
        await asyncio.sleep(0.01)
        raise RuntimeError("a bug")

    for call in (broken, raising):
        co = Coalescer(call, max_batch=16, slots=1)
        out = asyncio.run(asyncio.wait_for(_all(co, [[i] for i in range(4)]), timeout=5))  # nobody left waiting
        assert all(isinstance(e, Exception) for e in out)
        merged = out[1:]  # the first went alone
        assert all(type(e) is VLServeError for e in merged) and len({id(e) for e in merged}) == 3


def test_a_full_batch_goes_at_once_on_no_slot() -> None:
    started: list[list[Any]] = []

    async def call(items: list[Any]) -> np.ndarray:
        started.append(list(items))
        await asyncio.sleep(0.05)
        return np.zeros((len(items), 1), np.float32)

    async def scenario() -> None:
        small = asyncio.ensure_future(co([0]))
        await asyncio.sleep(0.01)  # the one slot is busy with it
        full = asyncio.ensure_future(co([1, 2, 3, 4]))
        await asyncio.sleep(0.01)
        assert started == [[0], [1, 2, 3, 4]]  # sent while the slot was still taken
        await asyncio.gather(small, full)

    co = Coalescer(call, max_batch=4, slots=1)
    asyncio.run(scenario())


def test_a_caller_that_gave_up_is_dropped() -> None:
    backend = Backend()
    co = Coalescer(backend, max_batch=16, slots=1)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(co([0]))
        await asyncio.sleep(0)  # the first is in flight; the next two wait
        gone = asyncio.ensure_future(co([1]))
        kept = asyncio.ensure_future(co([2]))
        await asyncio.sleep(0)
        gone.cancel()
        return [await first, await kept]

    first, kept = asyncio.run(scenario())
    assert first.tolist() == [[0.0]] and kept.tolist() == [[2.0]]
    assert backend.requests == [[0], [2]]


def test_more_items_than_a_batch_are_refused() -> None:
    co = Coalescer(Backend(), max_batch=2, slots=1)
    with pytest.raises(ValueError, match="chunk"):
        asyncio.run(co([1, 2, 3]))
