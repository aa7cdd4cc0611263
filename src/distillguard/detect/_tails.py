"""Empirical tails against a null sample, and the same tails kept up to date between looks.

`empirical_tail(null, s)` is the p-value `(1 + #{null >= s}) / (1 + len(null))` of each `s`.
The rarity evidence (`_rarity`) asks it at every decision for every account's share of
elicitation requests and mean P(distill), the null being the established accounts' shares.
Between two decisions only the accounts that sent requests change, so `KeptTail` keeps the
accounts sorted by their value and, at each look, takes out the ones whose value changed and
merges them back in at their new place (a sorted merge, not a sort of every account). One pass
over the sorted values then counts, for each, the null values at least as large.
"""

from __future__ import annotations

import numpy as np


def empirical_tail(null: np.ndarray, s: np.ndarray) -> np.ndarray:
    """`(1 + #{null >= s}) / (1 + len(null))` for each `s` (a valid p-value under the null)."""
    ordered = np.sort(null)
    above = len(ordered) - np.searchsorted(ordered, s, side="left")
    out: np.ndarray = (1.0 + above) / (1.0 + len(ordered))
    return out


def sorted_tail(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    """`empirical_tail(values[null], values)` for `values` sorted ascending (no NaN): per
    position, the null values at least as large as its value, counted over the positions from
    the first one of its value on."""
    n = len(values)
    before = np.cumsum(null) - null  # null values at earlier positions
    first = np.r_[True, values[1:] != values[:-1]] if n else np.zeros(0, bool)
    # Ties share the count of their first position (earlier positions hold smaller values).
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    total = int(before[-1] + null[-1]) if n else 0
    out: np.ndarray = (1.0 + (total - before[start])) / (1.0 + total)
    return out


class KeptTail:
    """`empirical_tail(values[null], values[on])` over looks at one growing set of accounts.

    Keeps the accounts that were `on` at the last look sorted by the value they had then;
    an account whose value or membership changed leaves and is merged back at its place.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.order = np.zeros(0, np.int64)  # the accounts on, by value
        self.sorted = np.zeros(0)  # their values, ascending
        self.value = np.zeros(0)  # per account: its value at the last look (where it was on)
        self.on = np.zeros(0, bool)  # per account: on at the last look

    def update(self, values: np.ndarray, null: np.ndarray, on: np.ndarray) -> np.ndarray:
        """Per account (`values`, `null`, `on` all per account): the p-value of its value
        against the values of the accounts both `null` and `on`, where `on` (1 elsewhere: no
        evidence)."""
        m = len(values)
        if np.isnan(values).any() and np.isnan(values[on]).any():  # no place in a sorted merge
            self._reset()
            out = np.ones(m)
            out[on] = empirical_tail(values[on & null], values[on])
            return out
        was = np.zeros(m, bool)
        was[: len(self.on)] = self.on[:m]
        old = np.zeros(m)
        old[: len(self.value)] = self.value[:m]
        moved = on & ~(was & (old == values))
        leave = was & (moved | ~on)
        if leave.any():
            keep = ~leave[self.order]
            self.order, self.sorted = self.order[keep], self.sorted[keep]
        come = np.flatnonzero(moved)
        if len(come):
            come = come[np.argsort(values[come], kind="stable")]
            at = np.searchsorted(self.sorted, values[come])
            self.order = np.insert(self.order, at, come)
            self.sorted = np.insert(self.sorted, at, values[come])
        self.value, self.on = values.copy(), on.copy()
        out = np.ones(m)
        out[self.order] = sorted_tail(self.sorted, null[self.order])
        return out
