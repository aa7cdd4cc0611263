"""Accounts outside a blocked campaign that send its templates as a member would (a reseller
passing the operator's requests among its customers' traffic; see `detect/_carriers.py`,
config `[evidence.carriers]`). Throttled, never blocked: their other traffic may be their
customers' own.
"""

from __future__ import annotations

from distillguard.detect._carriers import Carriers, CarrierTracker
from distillguard.detect._config import DetectConfig
from distillguard.detect._evidence._base import CarrierContext, CarrierEvidence, EvidenceTable


class CampaignCarriers(CarrierEvidence):
    """Carriers of blocked campaigns, looked for at most every `every_minutes` (a
    `CarrierTracker` kept by the module); the last answer in full is `last`."""

    name = "carriers"
    section = "carriers"
    columns = {
        "carries": "carries a blocked campaign's traffic",
        "peer": "the campaign member it overlaps most (-1: none)",
        "templates": "distinct campaign template keys it sends",
        "coverage": "median share of an overlapping member's campaign templates it sends",
        "members": "campaign members it overlaps with",
    }

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        self.tracker = CarrierTracker()
        self.last = Carriers.none(0)

    def assess(self, ctx: CarrierContext) -> EvidenceTable:
        c = self.tracker.update(ctx.state, ctx.pairs, ctx.component, ctx.blocked, ctx.cfg,
                                ctx.by_key, ctx.by_acct)
        self.last = c
        return self.table(carries=c.peer >= 0, peer=c.peer, templates=c.templates,
                          coverage=c.coverage, members=c.members)
