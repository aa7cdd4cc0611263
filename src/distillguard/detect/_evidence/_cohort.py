"""Cohorts: accounts tied by nothing but a shared scripted fingerprint and the tasks they ask.

The test is `detect/_cohort.py` (config `[evidence.cohort]`): per task stratum, how many
accounts show the fingerprint (single-turn, one frame of their own, task-pool content, items
nobody else sends by the dozen) against the rate of the other strata; members also draw their
tasks from the cohort's pool (`_items`). A cohort is reported as a campaign of its own; its
members (fingerprinted accounts in the stratum that are in no throttled or blocked campaign:
one that only monitors, such as a few accounts tied by a public template, does not keep them)
are throttled, never blocked: nothing but what they ask ties them. An account on a frame of
the cohorts' own (a word their members use and nobody judged outside them) is a member from
fewer requests, or outside the pool (`frame_prior`, `early`).
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._cohort import STRATA, Cohorts, CohortTracker
from distillguard.detect._config import CohortConfig, DetectConfig
from distillguard.detect._evidence._base import CampaignContext, CampaignEvidence, EvidenceTable
from distillguard.detect._state import DetectorState

#: The kind of link a cohort campaign is reported with (`campaigns`, the verdicts' reasons).
COHORT_KIND = "cohort"
#: The smallest p-value a reason quotes as a number (below it: "p < 1e-300").
_SMALLEST_P = 1e-300


class CohortEvidence(CampaignEvidence):
    """Members of a cohort (a task stratum with far more fingerprinted accounts than the other
    strata's rate allows); the last look in full is `last`."""

    name = "cohort"
    section = "cohort"
    columns = {
        "cell": "the cohort the account is a member of (-1: none)",
        "score": "actions.throttle_campaign_score for members (throttled, never blocked), else 0",
        "carries": "always false (a cohort has no carriers)",
        "p_value": "its cohort's p-value (Bonferroni over strata; 1: none)",
        "accounts": "fingerprinted accounts in its cohort's stratum (0: none)",
        "tested": "accounts tested in that stratum (0: none)",
        "null_rate": "the fingerprinted share of the other strata, its null rate (0: none)",
        "stratum": "that stratum, an index in detect._cohort.STRATA (meaningful where cell >= 0)",
        "item_overlap": "its items' overlap with its closest other account, share of the larger "
                        "item set (0: not looked at; members are under public_min_overlap)",
        "pool_similarity": "its tasks' topic similarity with its cohort's other fingerprinted "
                           "accounts (0: none; members at least min_pool_similarity unless the "
                           "cohort has no one pool)",
        "frame_prior": "where a frame of its cohort's own made it a member (outside every pool, "
                       "or early): the share of the accounts using that frame most that are "
                       "members (0: the fingerprint and pool alone)",
        "early": "a member before evidence.cohort.min_events requests, on its cohort's frame",
    }

    def __init__(self, cfg: DetectConfig) -> None:
        super().__init__(cfg)
        self.tracker = CohortTracker()
        self.last = Cohorts.none(0)
        self._members = np.zeros(0, np.int64)

    @property
    def config(self) -> CohortConfig:
        return self.cfg.evidence.cohort

    def assess(self, ctx: CampaignContext) -> EvidenceTable:
        state = ctx.account.state
        m = state.size
        found = self.tracker.update(state, self.config)
        self.last = found
        cohort = np.where(~ctx.flagged[:m], found.cohort[:m], -1)
        inside = cohort >= 0
        if not inside.any():
            self._members = np.zeros(0, np.int64)
            return self.off(m)
        # Cohorts numbered densely among those with a member left (others are in campaigns).
        present = np.bincount(cohort[inside], minlength=len(found.strata_flagged)) > 0
        dense = np.cumsum(present) - 1
        self._members = np.bincount(cohort[inside], minlength=len(found.strata_flagged))[present]
        cell = np.where(inside, dense[np.maximum(cohort, 0)], -1)
        stratum = np.zeros(m, np.int64)  # (read where cell >= 0 only)
        stratum[inside] = found.strata_flagged[cohort[inside]]
        p = np.where(inside, found.p_value[stratum], 1.0)
        size = np.where(inside, found.marked[stratum], 0)
        tested = np.where(inside, found.tested[stratum], 0)
        rate = np.where(inside, found.null_rate[stratum], 0.0)
        score = np.where(inside, self.cfg.actions.throttle_campaign_score, 0.0)
        return self.table(cell=cell, score=score, carries=np.zeros(m, bool), p_value=p,
                          accounts=size, tested=tested, null_rate=rate, stratum=stratum,
                          item_overlap=np.where(inside, found.overlap.share[:m], 0.0),
                          pool_similarity=np.where(inside, found.pool[:m], 0.0),
                          frame_prior=np.where(inside, found.prior[:m], 0.0),
                          early=inside & found.early[:m])

    def campaigns(self, state: DetectorState) -> tuple[list[list[str]], np.ndarray]:
        return [[COHORT_KIND] for _ in range(len(self._members))], self._members


def cohort_reason(t: EvidenceTable, i: int) -> tuple[str, dict[str, object]]:
    """Why account `i` (a member) is in a cohort, in words and structured (an analyst can
    check each number)."""
    s = int(t["stratum"][i])
    k, n = int(t["accounts"][i]), int(t["tested"][i])
    rate, p = float(t["null_rate"][i]), float(t["p_value"][i])
    # A binomial tail this far out underflows double precision: say so rather than "p = 0".
    weight = (f"p = {p:.2g} ({-np.log2(p):.0f} bits)" if p >= _SMALLEST_P
              else f"p < {_SMALLEST_P:.0e} (over {-np.log2(_SMALLEST_P):.0f} bits)")
    overlap = float(t["item_overlap"][i])
    pool = float(t["pool_similarity"][i])
    prior, early = float(t["frame_prior"][i]), bool(t["early"][i])
    group = (f"cohort: one of {k} of the {n} accounts asking mostly "
             f"{STRATA[s]} tasks that show the scripted task-pool fingerprint")
    if early:
        group = (f"cohort: a new member of the cohort of {k} of the {n} accounts asking mostly "
                 f"{STRATA[s]} tasks that show the scripted task-pool fingerprint")
    ties = (f"its tasks are drawn from the cohort's pool (topic similarity {pool:.2f})"
            if prior <= 0 else
            f"its requests{' so far' if early else ''} are single-turn task-pool content on a "
            f"prompt frame of the cohort's own ({prior:.0%} of the accounts using that frame "
            f"most are its members)")
    text = (f"{group} (single-turn, one prompt frame of its own, task-pool content, items of its "
            f"own: at most {overlap:.0%} shared with any other account); the other kinds of task "
            f"show it at a rate of {rate:.2%}, so {k} or more has {weight}; {ties}; throttled, not "
            f"blocked: only what it asks ties it")
    entry: dict[str, object] = {"stratum": STRATA[s], "fingerprinted": k, "accounts": n,
                                "null_rate": rate, "p_value": p, "item_overlap": overlap,
                                "pool_similarity": pool, "frame_prior": prior, "early": early}
    return text, entry
