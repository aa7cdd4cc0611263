"""Small campaigns that only a template's own traffic gives away, and who carries them.

Cells, solo cells and carried keys (see `detect/_cells.py`, config `[cells]`): members are
throttled as a campaign of their own, carriers as carrying it; never blocked.
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._cells import Cells, CellTracker
from distillguard.detect._config import DetectConfig
from distillguard.detect._evidence._base import CampaignContext, CampaignEvidence, EvidenceTable
from distillguard.detect._state import LINK_KINDS, DetectorState


class SmallCampaigns(CampaignEvidence):
    """Cells of tied harvest-like accounts on a harvest-like template, solo cells (one direct
    account and the carriers of its template) and carried keys of flagged accounts.

    Looked for at most every `cells.every_minutes` (a `CellTracker` kept by the module); the
    last answer in full (per cell: key, ties, size, ...) is `last`.
    """

    name = "cells"
    section = "cells"
    columns = {
        "cell": "the small campaign the account is a direct member of (-1: none)",
        "score": "its campaign score: the profile of the traffic on the cell's template (0: none)",
        "carries": "carries a small campaign's template, or a flagged account's carried key",
        "solo": "its small campaign is a carried key (one or a few direct accounts, no tie)",
    }

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        self.tracker = CellTracker()
        self.last = Cells.none(0)

    @property
    def settings(self) -> object:
        return self.cfg.cells

    def assess(self, ctx: CampaignContext) -> EvidenceTable:
        c = ctx.account
        cells = self.tracker.update(
            c.state, c.pairs, ctx.known_key_harvest, ctx.key_profile, c.harvest, ctx.free,
            c.cfg, c.by_key, ctx.by_acct, ctx.flagged, c.features["elicitation"],
        )
        self.last = cells
        m = c.state.size
        member = cells.member[:m]
        inside = member >= 0
        score = np.zeros(m)
        score[inside] = cells.key_profile[cells.key][member[inside]]
        solo = np.zeros(m, bool)
        solo[inside] = cells.solo[member[inside]]
        carries = (cells.carries[:m] >= 0) | (cells.carries_peer[:m] >= 0)
        return self.table(cell=member, score=score, carries=carries, solo=solo)

    def campaigns(self, state: DetectorState) -> tuple[list[list[str]], np.ndarray]:
        cells = self.last
        kinds = [sorted({LINK_KINDS[int(state.sid_link[cells.key[k]])], *cells.ties[k]})
                 for k in range(len(cells.size))]
        return kinds, cells.size
