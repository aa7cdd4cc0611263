"""Accounts that claim many countries but keep one clock on a suspicious key (see `_sync`).

One operator's schedule: corroborates the account's links (`[evidence.sync]`).
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._config import DetectConfig
from distillguard.detect._evidence._base import AccountEvidence, Context, EvidenceTable
from distillguard.detect._sync import SyncTracker


class SyncedClock(AccountEvidence):
    """An eligible account with a steady schedule of its own on a synchronised suspicious key.

    The synchronisation is measured at most every `every_minutes` (a `SyncTracker` kept by
    the module); a key that stopped being suspicious since no longer counts.
    """

    name = "sync"
    section = "sync"
    role = "corroboration"
    columns = {
        "fires": "on a synchronised suspicious key with a steady clock of its own",
        "weight": "the module's weight where it fires, else 0",
        "key": "the synchronised key quoted (the one with most accounts; -1 if none)",
        "accounts": "accounts the key's clock was measured on",
        "r_utc": "how much the key's accounts' mean hours line up in UTC (0-1)",
        "r_local": "... and in the local time of the countries they declare (0-1)",
    }

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        self.tracker = SyncTracker()

    def assess(self, ctx: Context) -> EvidenceTable:
        state, pairs, sus_key = ctx.state, ctx.pairs, ctx.suspicious
        m = state.size
        sync_key = np.full(m, -1, np.int64)
        sync = self.tracker.update(state, pairs, sus_key, ctx.cfg, ctx.by_key)
        # (Measured at most hourly: a key that stopped being suspicious since no longer counts.)
        synced_keys = sync.synced & sus_key
        if synced_keys.any():
            acct, sid = self.tracker.synced_pairs(pairs, ctx.by_key)
            ok = sus_key[sid] & ctx.eligible[acct] & sync.steady[acct]
            acct, sid = acct[ok], sid[ok]
            # Per account, the synced key with the most accounts (the evidence to quote; the
            # earliest shared of them on a tie).
            n_acc = sync.accounts[sid]
            most = np.zeros(m, np.int64)
            np.maximum.at(most, acct, n_acc)
            top = n_acc == most[acct]
            none = np.iinfo(np.int64).max
            best = np.full(m, none, np.int64)
            np.minimum.at(best, acct[top], sid[top])
            has = best < none
            sync_key[has] = best[has]
        fires = sync_key >= 0
        at = np.maximum(sync_key, 0)

        def per_key(values: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.where(fires, values[at] if len(values) else 0, 0)
            return out

        return self.table(
            fires=fires,
            weight=np.where(fires, self.cfg.evidence.sync.weight, 0.0),
            key=sync_key,
            accounts=per_key(sync.accounts),
            r_utc=per_key(sync.r_utc),
            r_local=per_key(sync.r_local),
        )
