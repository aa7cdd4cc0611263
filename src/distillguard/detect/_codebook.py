"""Sorted codebooks that grow by merging: the state's (account, key) pair totals, its heavy
template pairs and the item codebooks (`_items`).

A codebook maps distinct uint64 ids (a key hash, or a pair id `code << 24 | account`) to an
integer. One sorted array costs a copy of the whole book at every insert (and a union of two
sorted arrays by `np.union1d` a sort of it): per chunk of the replay, work that grows with
everything seen before. `SortedRuns` keeps a few sorted runs instead, each more than
`MERGE_RATIO` times longer than the next; new ids join as a run of their own and the last
runs merge while that order would break (a log-structured merge). Adding k ids to a book of
n then costs O(k log(n / k)) amortised, and a lookup searches at most log2(n) runs, most of
them short.
"""

from __future__ import annotations

import numpy as np

#: A run merges with the next newer one unless it is more than this many times longer.
MERGE_RATIO = 2


class SortedRuns:
    """Distinct uint64 ids, each with a value of `dtype` (None: a set, no values)."""

    def __init__(self, dtype: type | np.dtype | None = np.int64) -> None:
        self.dtype = None if dtype is None else np.dtype(dtype)
        self._ids: list[np.ndarray] = []  # sorted runs, longest (oldest) first
        self._vals: list[np.ndarray] = []  # their values (empty for a set)

    @classmethod
    def of(cls, ids: np.ndarray, values: np.ndarray | None = None,
           dtype: type | np.dtype | None = np.int64) -> SortedRuns:
        """A book holding these distinct ids (and values), in any order."""
        book = cls(dtype)
        book.add(ids, values)
        return book

    def __len__(self) -> int:
        return sum(len(r) for r in self._ids)

    @property
    def runs(self) -> int:
        return len(self._ids)

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(run, position) of each id; run -1 where the book does not hold it.

        Sorted `ids` search fastest (numpy narrows each search by the one before)."""
        ids = np.asarray(ids, np.uint64)
        run = np.full(len(ids), -1, np.int64)
        pos = np.zeros(len(ids), np.int64)
        todo: np.ndarray | None = None  # None: every id (no copy until a run has hit some)
        for r, keys in enumerate(self._ids):
            want = ids if todo is None else ids[todo]
            if not len(want):
                break
            at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
            hit = keys[at] == want
            where = np.flatnonzero(hit) if todo is None else todo[hit]
            run[where] = r
            pos[where] = at[hit]
            todo = np.flatnonzero(~hit) if todo is None else todo[~hit]
        return run, pos

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Whether each id is in the book."""
        return self.locate(ids)[0] >= 0

    def values_at(self, run: np.ndarray, pos: np.ndarray, default: int = 0) -> np.ndarray:
        """The values at `locate`'s places (`default` where run is -1)."""
        out = np.full(len(run), default, self._value_dtype())
        for r, vals in enumerate(self._vals):
            at = run == r
            out[at] = vals[pos[at]]
        return out

    def get(self, ids: np.ndarray, default: int = 0) -> np.ndarray:
        """The value of each id (`default` where the book does not hold it)."""
        return self.values_at(*self.locate(ids), default=default)

    def assign(self, run: np.ndarray, pos: np.ndarray, values: np.ndarray) -> None:
        """Overwrite the values at `locate`'s places (all held: run >= 0)."""
        for r, vals in enumerate(self._vals):
            at = run == r
            vals[pos[at]] = values[at]

    def add(self, ids: np.ndarray, values: np.ndarray | None = None) -> None:
        """Add ids the book does not hold yet (distinct, any order) with their values."""
        ids = np.asarray(ids, np.uint64)
        if not len(ids):
            return
        order = np.argsort(ids, kind="stable")
        self._ids.append(ids[order])
        if self.dtype is not None:
            if values is None:
                raise ValueError("SortedRuns.add: this book keeps a value per id; none given")
            self._vals.append(np.asarray(values, self.dtype)[order])
        while len(self._ids) > 1 and len(self._ids[-2]) <= MERGE_RATIO * len(self._ids[-1]):
            self._merge_last()

    def ids(self) -> np.ndarray:
        """Every id, sorted (one merged copy; for checks and views, not for the hot path)."""
        return self._merged()[0]

    def values(self) -> np.ndarray:
        """The values in `ids()` order."""
        return self._merged()[1]

    def _value_dtype(self) -> np.dtype:
        if self.dtype is None:
            raise ValueError("SortedRuns: this book is a set and keeps no values")
        return self.dtype

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._ids:
            empty = np.zeros(0, self.dtype if self.dtype is not None else bool)
            return np.zeros(0, np.uint64), empty
        ids = np.concatenate(self._ids)
        order = np.argsort(ids, kind="stable")
        vals = np.concatenate(self._vals)[order] if self.dtype is not None else np.zeros(0, bool)
        return ids[order], vals

    def _merge_last(self) -> None:
        """Merge the two newest runs into one (disjoint, both sorted: a place per new id)."""
        b, a = self._ids.pop(), self._ids.pop()
        at = np.searchsorted(a, b) + np.arange(len(b))
        old = np.ones(len(a) + len(b), bool)
        old[at] = False
        ids = np.empty(len(old), np.uint64)
        ids[at], ids[old] = b, a
        self._ids.append(ids)
        if self.dtype is not None:
            vb, va = self._vals.pop(), self._vals.pop()
            vals = np.empty(len(old), self.dtype)
            vals[at], vals[old] = vb, va
            self._vals.append(vals)
