"""Accounts that carry a campaign's traffic among their own: a reseller serving the operator.

A reseller can pass a campaign's requests through its account beside its customers' traffic.
Its own profile is diluted, and it shares no address, payment or sign-up with the campaign,
only the prompts. A *campaign template* is a template key used mostly (80%) by three or more
blocked members. An outsider is a carrier when it sends enough campaign templates and they
cover a good share of what the members it overlaps with send (the median member), not just a
few items: an evaluation runner sends the public benchmark items a campaign also uses, but
only a slice of each member's repertoire.

The replay asks after every window, so `CarrierTracker` keeps the count of blocked members
per key and of campaign templates per account from one call to the next, and only reads the
pairs of the candidates and of the keys they send.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from distillguard.detect._cadence import Cadence
from distillguard.detect._config import DetectConfig
from distillguard.detect._links import PairIndex
from distillguard.detect._state import (
    IS_TEMPLATE_LINK,
    PAIR_ACCOUNT,
    PAIR_KEY,
    PAIR_KIND,
    DetectorState,
)

CAMPAIGN_KEY_MEMBERS = 3  # blocked members on a key before it can be a campaign template
CAMPAIGN_KEY_SHARE = 0.8  # ... and their share of the key's accounts


@dataclass
class Carriers:
    """Per account: the campaign member whose templates it carries (-1: none), and how much
    (filled for carriers only)."""

    peer: np.ndarray  # a member of the campaign carried (the one it overlaps most)
    coverage: np.ndarray  # median share of an overlapping member's campaign templates it sends
    templates: np.ndarray  # distinct campaign template keys it sends
    members: np.ndarray  # campaign members it overlaps with

    def grown(self, m: int) -> Carriers:
        """The same answer for `m` accounts (accounts seen since carry nothing yet)."""
        n = len(self.peer)
        if n >= m:
            return self
        more = Carriers.none(m - n)
        return Carriers(*(np.concatenate([a, b]) for a, b in (
            (self.peer, more.peer), (self.coverage, more.coverage),
            (self.templates, more.templates), (self.members, more.members))))

    @classmethod
    def none(cls, m: int) -> Carriers:
        return cls(np.full(m, -1, np.int64), np.zeros(m), np.zeros(m, np.int64),
                   np.zeros(m, np.int64))


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a
    out = np.zeros(n, a.dtype)
    out[: len(a)] = a
    return out


class _MaskedCount:
    """Per value of one pair column, how many pairs have their other column in a mask.

    Pairs are only appended and the mask flips for few values between calls, so the counts
    are kept: new pairs are added, and the older pairs of flipped values (found through
    `index`, which groups the pairs by the mask's column) move in or out.
    """

    def __init__(self, mask_col: int, count_col: int, kinds: np.ndarray | None = None) -> None:
        self.mask_col, self.count_col, self.kinds = mask_col, count_col, kinds
        self.n = 0  # pairs folded in
        self.mask = np.zeros(0, bool)
        self.counts = np.zeros(0, np.int64)

    def update(self, pairs: np.ndarray, mask: np.ndarray, size: int,
               index: PairIndex) -> np.ndarray:
        self.counts = _grow(self.counts, size)
        self.mask = _grow(self.mask, len(mask))
        flip = mask != self.mask
        if flip.any():
            pos = index.select(pairs, flip, ordered=False)
            rows = pairs[pos[pos < self.n]]
            if self.kinds is not None:
                rows = rows[self.kinds[rows[:, PAIR_KIND]]]
            np.add.at(self.counts, rows[:, self.count_col],
                      np.where(mask[rows[:, self.mask_col]], 1, -1))
        new = pairs[self.n :]
        on = mask[new[:, self.mask_col]]
        if self.kinds is not None:
            on &= self.kinds[new[:, PAIR_KIND]]
        np.add.at(self.counts, new[on, self.count_col], 1)
        self.mask = mask.copy()
        self.n = len(pairs)
        return self.counts[:size]


class CarrierTracker:
    """Blocked members per template key, kept from one call to the next (exact)."""

    def __init__(self) -> None:
        # Per template key: its blocked members; per account: its pairs on campaign templates.
        self.by_members = _MaskedCount(mask_col=PAIR_ACCOUNT, count_col=PAIR_KEY, kinds=IS_TEMPLATE_LINK)
        self.per_acct = _MaskedCount(mask_col=3, count_col=2)
        # Recomputed at most every `evidence.carriers.every_minutes` of log time.
        self.looks: Cadence[Carriers] = Cadence()

    def update(self, state: DetectorState, pairs: np.ndarray, component: np.ndarray,
               blocked: np.ndarray, cfg: DetectConfig, by_key: PairIndex,
               by_acct: PairIndex) -> Carriers:
        """The carriers as of now; `by_key`/`by_acct` index `pairs` by key sid and account.

        The overlaps are the costly part on a large log, and a carrier shows itself over
        hours, so the answer is recomputed at most every `evidence.carriers.every_minutes` of log
        time (0: every call) and reused in between.
        """
        last = self.looks.reuse(state.now_us, cfg.evidence.carriers.every_minutes)
        if last is not None:
            return last.grown(state.size)
        return self.looks.keep(
            self._compute(state, pairs, component, blocked, cfg, by_key, by_acct))

    def _compute(self, state: DetectorState, pairs: np.ndarray, component: np.ndarray,
                 blocked: np.ndarray, cfg: DetectConfig, by_key: PairIndex,
                 by_acct: PairIndex) -> Carriers:
        m, n_keys = state.size, state.shared_keys
        out = Carriers.none(m)
        bm = self.by_members.update(pairs, blocked, n_keys, by_acct)
        if not blocked.any():
            return out
        lk = cfg.evidence.carriers
        accounts = state.key_accounts[state.sid_code[:n_keys]]
        campaign_key = (bm >= CAMPAIGN_KEY_MEMBERS) & (bm >= CAMPAIGN_KEY_SHARE * accounts)
        per_acct = self.per_acct.update(pairs, campaign_key, m, by_key)
        if not campaign_key.any():
            return out
        cand = np.flatnonzero((component < 0) & ~blocked & (per_acct >= lk.min_templates))
        peers = np.flatnonzero(blocked & (per_acct >= CAMPAIGN_KEY_MEMBERS))
        if not len(cand) or not len(peers):
            return out
        # Only the candidates' campaign pairs, and the peers' pairs on the same keys, count in
        # the overlaps (the same matrix products, without the columns no candidate touches).
        is_cand = np.zeros(m, bool)
        is_cand[cand] = True
        # (Only the account and key columns are gathered: the selections are large.)
        at = by_acct.select(pairs, is_cand, ordered=False)
        my_acct, my_sid = pairs[at, PAIR_ACCOUNT], pairs[at, PAIR_KEY]
        on = campaign_key[my_sid]
        my_acct, my_sid = my_acct[on], my_sid[on]
        touched = np.zeros(n_keys, bool)
        touched[my_sid] = True
        at = by_key.select(pairs, touched, ordered=False)
        their_acct, their_sid = pairs[at, PAIR_ACCOUNT], pairs[at, PAIR_KEY]
        is_peer = np.zeros(m, bool)
        is_peer[peers] = True
        on = is_peer[their_acct]
        their_acct, their_sid = their_acct[on], their_sid[on]
        size = per_acct[peers]
        # Most candidates cannot reach the bar, which bounds show before the product.
        busiest = np.zeros(m, np.int64)
        np.maximum.at(busiest, my_acct, np.bincount(their_sid, minlength=n_keys)[my_sid])
        cand = cand[_may_carry(per_acct[cand], busiest[cand], size, lk.min_coverage)]
        if not len(cand):
            return out
        # Candidates x keys times keys x members, built directly from the pairs (float32:
        # the overlaps are counts, exact far beyond any repertoire).
        row = np.full(m, -1, np.int64)
        row[cand] = np.arange(len(cand))
        on = row[my_acct] >= 0
        xc = csr_matrix((np.ones(int(on.sum()), np.float32), (row[my_acct[on]], my_sid[on])),
                        shape=(len(cand), n_keys))
        row[:] = -1
        row[peers] = np.arange(len(peers))
        xp = csr_matrix((np.ones(len(their_sid), np.float32), (their_sid, row[their_acct])),
                        shape=(n_keys, len(peers)))
        overlap = (xc @ xp).tocsr()
        # Ordering every row's shares for its median is the costly step: only rows where
        # half of them reach the bar can have a median that does.
        maybe = _may_reach(overlap, size, lk.min_coverage)
        rows, n, med, best = _overlaps(overlap[maybe], size)
        if not len(rows):
            return out
        idx = cand[maybe[rows]]
        out.coverage[idx] = med
        out.templates[idx] = per_acct[idx]
        out.members[idx] = n
        carry = med >= lk.min_coverage
        out.peer[idx[carry]] = peers[best[carry]]
        return out


def _may_carry(templates: np.ndarray, busiest: np.ndarray, size: np.ndarray,
               bar: float) -> np.ndarray:
    """Candidates (mask) whose median share may reach `bar`, before their overlaps are known.

    A candidate with `templates` campaign templates overlaps a member on at most those, so it
    reaches only members with `size` at most `templates / bar`; and half the members it
    overlaps must reach, while it overlaps at least as many as its busiest key holds
    (`busiest`: the most members on one of its keys).
    """
    reachable = np.searchsorted(np.sort(size), templates * (1 + 1e-9) / max(bar, 1e-9),
                                side="right")
    out: np.ndarray = reachable >= busiest - busiest // 2
    return out


def _may_reach(overlap: csr_matrix, size: np.ndarray, bar: float) -> np.ndarray:
    """Rows whose median of `data / size[column]` may reach `bar`: at least half of the
    row's values do (the upper of the two middle values is at least the median)."""
    counts = np.diff(overlap.indptr)
    ok = np.concatenate([[0], np.cumsum(overlap.data / size[overlap.indices] >= bar)])
    reach = ok[overlap.indptr[1:]] - ok[overlap.indptr[:-1]]
    return np.flatnonzero((counts >= CAMPAIGN_KEY_MEMBERS) & (reach >= counts - counts // 2))


def _overlaps(overlap: csr_matrix,
              size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows with at least `CAMPAIGN_KEY_MEMBERS` entries: their entry count, the median of
    `data / size[column]` (np.median's: the middle value, or the mean of the two middle ones)
    and the column of the row's largest entry (the first such in the row, as np.argmax picks).
    All rows at once.
    """
    counts = np.diff(overlap.indptr)
    rows = np.flatnonzero(counts >= CAMPAIGN_KEY_MEMBERS)
    row_of = np.repeat(np.arange(len(counts)), counts)
    on = counts[row_of] >= CAMPAIGN_KEY_MEMBERS
    data, cols, row_of = overlap.data[on], overlap.indices[on], row_of[on]
    n = counts[rows]
    if not len(rows):
        return rows, n, np.zeros(0), n
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    # The rows come in order, so one argsort of row * span + value orders every row's values
    # at once (a two-key lexsort costs about three times more).
    cover = data / size[cols]
    span = float(cover.max()) + 1.0
    cover = cover[np.argsort(row_of * span + cover)]
    mid = start + n // 2
    med = np.where(n % 2 == 1, cover[mid], (cover[mid - 1] + cover[mid]) / 2)
    top = np.maximum.reduceat(data, start)
    first = np.flatnonzero(data == top[np.searchsorted(rows, row_of)])
    _, at = np.unique(row_of[first], return_index=True)
    return rows, n, med, cols[first[at]]
