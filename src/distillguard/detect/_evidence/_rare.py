"""Evidence weighed by how rare it is among the log's established accounts (`detect/_rarity`).

One module, `rarity` (config `[evidence.rarity]`, role `solo`): every piece of evidence about
an account becomes a p-value against the log's established accounts, combined by the Cauchy
combination test; an account whose combined p is at most `max_p` is throttled on its own.

A key that institutions share (e-mail domain, sign-up hour, address) counts only when the
traffic behind it is harvest-like (`_rarity`, the gated kinds), and strangers hold such a key
by chance: a person who signed up in a campaign's burst hour shares the key but not the
traffic that makes it suspicious. So a gated key counts only for an account that itself asks
for what a harvester asks for: its share of requests asking for reasoning, grades or training
data, or the mean P(distill) of its prompts, at least `key_min_share` (`_own_asks`). What
it asks, not its volume, clients or hours: those a careful operator keeps human, and a
developer's script has them too. A card, rare by how many accounts it pays for whatever they
send, counts for every account.
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._config import DetectConfig
from distillguard.detect._evidence._base import EvidenceTable, SoloContext, SoloEvidence
from distillguard.detect._rarity import EVIDENCE, Rarity, RarityTracker


def _columns() -> dict[str, str]:
    cols = {
        "throttles": "its combined p-value is at most max_p",
        "combined_p": "the Cauchy combination of its p-values (1: no evidence)",
    }
    for name in EVIDENCE:
        cols[name] = f"the statistic of evidence {name!r} (see detect/_rarity.py)"
        cols[f"{name}_p"] = "its one-sided p-value against the established accounts (1: absent)"
    return cols


class RareEvidence(SoloEvidence):
    """An account whose evidence is rare among established accounts (see `detect/_rarity`),
    a gated key counting only for an account that asks what a harvester asks.

    Looked at most every `every_minutes` (a `RarityTracker` kept by the module); the last
    answer in full (per evidence: statistic, p-value, bits; the null's size) is `last`.
    """

    name = "rarity"
    section = "rarity"
    columns = _columns()

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        self.tracker = RarityTracker()
        self.last = Rarity.none(0)

    def assess(self, ctx: SoloContext) -> EvidenceTable:
        r = self.tracker.update(ctx.state, ctx.features, ctx.cfg, ctx.suspicious, ctx.by_key)
        self.last = r
        return self._table(r)

    def off(self, m: int) -> EvidenceTable:
        return self._table(Rarity.none(m))

    def _table(self, r: Rarity) -> EvidenceTable:
        cols: dict[str, np.ndarray] = {"throttles": r.flag, "combined_p": r.combined}
        for e, name in enumerate(EVIDENCE):
            cols[name] = r.stat[:, e]
            cols[f"{name}_p"] = r.p[:, e]
        return self.table(**cols)
