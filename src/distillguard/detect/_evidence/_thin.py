"""A thin account (too few requests for a profile of its own) needs more evidence to join.

With fewer than `harvest.min_events` requests, an account's harvest profile is scaled down
and says little, so it joins a campaign only with `[evidence.thin] min_link_families` of
evidence weight instead of `links.min_link_families`.
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._evidence._base import AccountEvidence, Context, EvidenceTable


class ThinAccount(AccountEvidence):
    """Sets the evidence weight each account needs to join (`need`)."""

    name = "thin"
    section = "thin"
    role = "requirement"
    columns = {
        "need": "the evidence weight the account needs to join a campaign",
        "thin": "fewer than harvest.min_events requests",
    }

    def assess(self, ctx: Context) -> EvidenceTable:
        thin = ~ctx.established
        need = np.where(thin, self.cfg.evidence.thin.min_link_families,
                        self.cfg.links.min_link_families)
        return self.table(need=need, thin=thin)

    def off(self, m: int) -> EvidenceTable:
        return EvidenceTable(self.name, {"need": np.full(m, self.cfg.links.min_link_families),
                                         "thin": np.zeros(m, bool)})
