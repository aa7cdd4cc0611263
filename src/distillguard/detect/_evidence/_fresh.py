"""A fresh, unverified account that keeps asking for reasoning traces, grades or training data.

Account farms open such accounts by the hundred, while a developer trying the API writes code,
not requests for training data. Corroborates an account's links (`[evidence.fresh]`).
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._evidence._base import AccountEvidence, Context, EvidenceTable


class FreshAccount(AccountEvidence):
    """New (`harvest` feature `new_account`), unverified, harvest-like (`min_harvest`) and
    eliciting (`min_elicitation`)."""

    name = "fresh"
    section = "fresh"
    role = "corroboration"
    columns = {
        "fires": "new, unverified, harvest-like and eliciting",
        "weight": "the module's weight where it fires, else 0",
    }

    def assess(self, ctx: Context) -> EvidenceTable:
        c = self.cfg.evidence.fresh
        f = ctx.features
        fires = (
            (f["new_account"] >= 1)
            & (f["unverified"] >= 1)
            & (ctx.harvest >= c.min_harvest)
            & (f["elicitation"] >= c.min_elicitation)
        )
        return self.table(fires=fires, weight=np.where(fires, c.weight, 0.0))
