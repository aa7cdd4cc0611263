"""An account that matches indicators partners shared (a STIX import, see `report`).

Known before the scan; corroborates the account's links (`[evidence.partner]`).
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._evidence._base import AccountEvidence, Context, EvidenceTable


class PartnerMatch(AccountEvidence):
    """The account is among `state.partners` (matched to partners' indicators)."""

    name = "partner"
    section = "partner"
    role = "corroboration"
    columns = {
        "fires": "matches partners' shared indicators",
        "weight": "the module's weight where it fires, else 0",
    }

    def assess(self, ctx: Context) -> EvidenceTable:
        fires = ctx.state.partner[: ctx.state.size].astype(bool)
        return self.table(fires=fires, weight=np.where(fires, self.cfg.evidence.partner.weight, 0.0))
