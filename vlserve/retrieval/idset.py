"""Which ids of a batch to add: the first occurrence of each id the collection does not hold yet
(adds are idempotent, whichever store is behind them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def new_ids(ids: np.ndarray, has: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Boolean mask over ``ids`` (int64): True at each id's first occurrence when ``has`` says it is new."""
    _, first = np.unique(ids, return_index=True)
    keep = np.zeros(len(ids), bool)
    keep[first] = True
    return keep & ~has(ids)
