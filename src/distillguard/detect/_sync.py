"""Synchronised timing: accounts on one key that keep one clock whatever country they claim.

People keep their own hours: developers in many countries who share an app's system prompt are
active in their own daytime, spread over the UTC day, and a classroom or an office shares one
time zone. An operator spreading a campaign over accounts that claim many countries runs them
all on its own schedule: their activity lines up in UTC and scatters once each account's
declared time zone is applied. Per key, that is measured on the circle of hours: each account's
mean hour of activity (a unit vector), averaged over the key's accounts in UTC (`r_utc`) and in
each account's local time (`r_local`). A key is *synchronised* when `r_utc` is high and clearly
above `r_local`; only then does the claim of many countries contradict the clock. Accounts in
one country (or with no country) get `r_utc == r_local` and never look synchronised.

Only system-prompt and address keys are measured: a prompt-template band is a hash of a dozen
words, and the popular ones gather several campaigns and ordinary users at once, so a band's
clock says nothing about any one of its accounts (measured: on the tuning scenario, synced bands
gave hundreds of developers a second kind of link). Sign-up and payment keys are kinds of link
of their own already.

A schedule shows itself over hours, so `SyncTracker` recomputes at most every
`evidence.sync.every_minutes` of log time and reuses its answer in between.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillguard.detect._cadence import Cadence
from distillguard.detect._config import DetectConfig
from distillguard.detect._links import PairIndex
from distillguard.detect._state import LINK_KINDS, PAIR_ACCOUNT, PAIR_KEY, DetectorState

_ANGLE = np.arange(24) * (2 * np.pi / 24)
_UNIT = np.column_stack([np.cos(_ANGLE), np.sin(_ANGLE)])  # each hour on the unit circle
# Per link kind: whether its keys are measured (a lookup: cheaper than np.isin per call).
_MEASURED = np.isin(np.arange(len(LINK_KINDS)), [LINK_KINDS.index("sys"), LINK_KINDS.index("ip")])


@dataclass
class Sync:
    """Per shared key: the two resultant lengths and the accounts they were measured on."""

    r_utc: np.ndarray
    r_local: np.ndarray
    accounts: np.ndarray
    synced: np.ndarray  # bool
    # Per account: it keeps a schedule of its own (its hours concentrate as much as a synced
    # key's accounts line up). A reseller mixing its customers' hours does not.
    steady: np.ndarray

    @classmethod
    def none(cls, k: int, m: int = 0) -> Sync:
        return cls(np.zeros(k), np.zeros(k), np.zeros(k, np.int64), np.zeros(k, bool),
                   np.zeros(m, bool))

    def grown(self, k: int, m: int) -> Sync:
        """The same answer for `k` keys and `m` accounts (newer ones: not synced)."""
        def pad(a: np.ndarray, n: int) -> np.ndarray:
            return a if len(a) >= n else np.concatenate([a, np.zeros(n - len(a), a.dtype)])

        return Sync(pad(self.r_utc, k), pad(self.r_local, k), pad(self.accounts, k),
                    pad(self.synced, k), pad(self.steady, m))


def account_clocks(state: DetectorState,
                   min_events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each account's mean hour of activity as a unit vector (x + iy), in UTC and local time
    (0 for accounts with fewer than `min_events` requests), and how concentrated its hours are
    (the resultant length of its requests' hours, 0 to 1).

    The state counts hours in the account's local time (for its night share); UTC is that
    turned back by the declared offset.
    """
    m = state.size
    hours = state.hours[:m].astype(np.float64)
    # Real and imaginary parts in one real matrix product: numpy's complex product of a real
    # matrix casts it and skips BLAS, some 30 times slower.
    xy = hours @ _UNIT
    z = xy[:, 0] + 1j * xy[:, 1]
    size = np.abs(z)
    n = hours.sum(axis=1)
    ok = (n >= min_events) & (size > 0)
    local = np.where(ok, z / np.where(size > 0, size, 1.0), 0.0)
    utc = local * np.exp(-1j * state.offset_h[:m] * (2 * np.pi / 24))
    concentration = np.where(ok, size / np.maximum(n, 1.0), 0.0)
    return utc, local, concentration


def key_sync(state: DetectorState, pairs: np.ndarray, keys: np.ndarray, cfg: DetectConfig,
             by_key: PairIndex) -> Sync:
    """The sync measure of the keys in mask `keys` (others stay 0), from their pairs."""
    lk = cfg.evidence.sync
    k = len(keys)
    out = Sync.none(k, state.size)
    keys = keys & _MEASURED[state.sid_link[:k]]
    if not keys.any():
        return out
    utc, local, concentration = account_clocks(state, lk.min_events)
    out.steady = concentration >= lk.min_utc
    at = by_key.select(pairs, keys, ordered=False)
    acct, sid = pairs[at, PAIR_ACCOUNT], pairs[at, PAIR_KEY]
    counted = utc[acct] != 0
    acct, sid = acct[counted], sid[counted]
    n = np.bincount(sid, minlength=k)
    denom = np.maximum(n, 1)
    mean_utc = (np.bincount(sid, utc[acct].real, k) + 1j * np.bincount(sid, utc[acct].imag, k))
    mean_loc = (np.bincount(sid, local[acct].real, k)
                + 1j * np.bincount(sid, local[acct].imag, k))
    out.r_utc = np.abs(mean_utc) / denom
    out.r_local = np.abs(mean_loc) / denom
    out.accounts = n
    out.synced = (
        keys
        & (n >= cfg.links.min_accounts)
        & (out.r_utc >= lk.min_utc)
        & (out.r_utc - out.r_local >= lk.min_gap)
    )
    return out


class SyncTracker:
    """The last `key_sync` answer and its log time: recomputed at most every
    `evidence.sync.every_minutes` (0: every call)."""

    def __init__(self) -> None:
        self.looks: Cadence[Sync] = Cadence()
        # The (account, key sid) pairs on the last answer's synced keys, and how many of the
        # shared pairs they cover (pairs are only appended; a new answer starts afresh).
        self._on_synced = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._n = 0

    def update(self, state: DetectorState, pairs: np.ndarray, keys: np.ndarray,
               cfg: DetectConfig, by_key: PairIndex) -> Sync:
        last = self.looks.reuse(state.now_us, cfg.evidence.sync.every_minutes)
        if last is not None:
            return last.grown(len(keys), state.size)
        self._n = 0
        return self.looks.keep(key_sync(state, pairs, keys, cfg, by_key))

    def synced_pairs(self, pairs: np.ndarray, by_key: PairIndex) -> tuple[np.ndarray, np.ndarray]:
        """Accounts and key sids of the pairs on the last answer's synced keys (kept between
        calls: the replay asks after every window, the answer changes at most hourly)."""
        last = self.looks.last
        synced = last.synced if last is not None else np.zeros(0, bool)
        if self._n == 0:
            pos = by_key.select(pairs, synced, ordered=False)
            self._on_synced = (pairs[pos, PAIR_ACCOUNT], pairs[pos, PAIR_KEY])
        elif self._n < len(pairs):
            new = pairs[self._n :]
            new = new[new[:, PAIR_KEY] < len(synced)]
            new = new[synced[new[:, PAIR_KEY]]]
            acct, sid = self._on_synced
            self._on_synced = (np.concatenate([acct, new[:, PAIR_ACCOUNT]]), np.concatenate([sid, new[:, PAIR_KEY]]))
        self._n = len(pairs)
        return self._on_synced
