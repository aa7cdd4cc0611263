"""The decision step: pure functions from evidence tables and campaign scores to actions.

Two steps, both pure (arrays in, arrays out):

- `join`: which accounts join a campaign. An account's evidence weight is the sum of the
  weights of the kinds of link it has on suspicious keys, plus the strongest corroboration
  (fresh account, partner indicator, one clock) once it has a link; it joins when the weight
  reaches what the requirement modules ask (`links.min_link_families`, more for a thin
  account). A shared benchmark prompt alone makes an evaluation runner look like a member;
  two independent kinds of evidence do not happen by chance.
- `actions`: monitor, throttle or block, from the account's harvest profile, its campaign's
  score and size, the small campaigns (cells) and whether it is tied by more than a prompt
  and a sign-up hour.
- `solo_throttles`: the accounts that a `solo` module (rarity) throttles on its own; they
  are throttled whatever the campaigns say, never blocked by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distillguard.detect._config import DetectConfig
from distillguard.detect._evidence import Evidence, EvidenceTable, LinkEvidence

ALLOW, MONITOR, THROTTLE, BLOCK = 0, 1, 2, 3
ACTION_NAMES = ("allow", "monitor", "throttle", "block")

#: An account's score is the larger of its campaign's score and this share of its own harvest
#: profile (a harvest-like account alone never scores like a campaign).
HARVEST_SCORE_SHARE = 0.7


@dataclass(frozen=True)
class Join:
    """Per account: its evidence and whether it joins a campaign."""

    weight: np.ndarray  # evidence weight (links plus the strongest corroboration)
    need: np.ndarray  # the weight it needs
    linked: np.ndarray  # has a pair on a suspicious key (of any kind) while eligible
    joined: np.ndarray  # linked and weight >= need
    tied: np.ndarray  # tied by infrastructure or corroboration, not just prompts and sign-up hour
    link_fires: np.ndarray  # (m, link modules) bool, in `link_names` order
    link_names: tuple[str, ...]


def join(modules: Sequence[Evidence], tables: dict[str, EvidenceTable], m: int) -> Join:
    """Combine the modules' tables into each account's evidence and the accounts that join."""
    links = [mod for mod in modules if isinstance(mod, LinkEvidence)]
    fires = np.zeros((m, len(links)), bool)
    link_weight = np.zeros(m)
    infra = np.zeros(m, bool)
    for j, link in enumerate(links):
        t = tables[link.name]
        fires[:, j] = t["pairs"] > 0
        link_weight = link_weight + t["weight"]
        if link.infrastructure:
            infra |= fires[:, j]
    corroborated = np.zeros(m)
    corroborating = np.zeros(m, bool)
    need = np.zeros(m)
    for mod in modules:
        if mod.role == "corroboration":
            t = tables[mod.name]
            corroborated = np.maximum(corroborated, t["weight"])
            corroborating |= t["fires"]
        elif mod.role == "requirement":
            need = np.maximum(need, tables[mod.name]["need"])
    linked = np.asarray(fires.any(axis=1), bool)
    weight = link_weight + np.where(linked, corroborated, 0.0)
    return Join(
        weight=weight,
        need=need,
        linked=linked,
        joined=linked & (weight >= need),
        tied=infra | corroborating,
        link_fires=fires,
        link_names=tuple(mod.name for mod in links),
    )


def actions(cfg: DetectConfig, harvest: np.ndarray, component: np.ndarray,
            campaign_score: np.ndarray, block_score: np.ndarray, campaign_size: np.ndarray,
            in_cell: np.ndarray, watched: np.ndarray, tied: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Actions before carriers, and the accounts whose campaign decides a block.

    Args:
        cfg: thresholds (`[actions]`, `[links]`).
        harvest: per account, its harvest profile.
        component: its campaign (-1: none); `campaign_score`, `campaign_size` of it.
        block_score: its infrastructure group's score where that decides a block (else 0).
        in_cell: member of a small campaign (throttled, never blocked).
        watched: linked or matched to partners' indicators: monitored at least.
        tied: `Join.tied`; a member tied only by prompts and a sign-up hour is throttled.

    Returns:
        (action per account, block: in a campaign that blocks, before `tied`).
    """
    act, lk = cfg.actions, cfg.links
    m = len(harvest)
    action = np.full(m, ALLOW, np.int64)
    action[harvest >= act.monitor_harvest] = MONITOR
    in_comp = component >= 0
    action[in_comp | watched] = MONITOR
    throttle = in_comp & (campaign_score >= act.throttle_campaign_score) & (
        campaign_size >= lk.min_accounts)
    # A cell is small by definition; what condemns it is its template's traffic, not its size.
    throttle |= in_cell
    block = (
        in_comp
        & (np.maximum(campaign_score, block_score) >= act.block_campaign_score)
        & (campaign_size >= act.min_campaign_accounts)
        & (harvest >= act.min_member_harvest)
        & ~in_cell
    )
    action[throttle] = THROTTLE
    # A stranger who signed up in a campaign's burst hour and sends a popular prompt it also
    # sends looks the same as a member tied only by those: throttled, not blocked.
    action[block & tied] = BLOCK
    return action, block


def carried(cfg: DetectConfig, action: np.ndarray, harvest: np.ndarray,
            campaign_score: np.ndarray, carrying: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Throttle the accounts that carry a campaign's traffic (never blocked: the carrier's
    other traffic may be its customers' own); the final action and score per account."""
    action = action.copy()
    action[carrying] = np.maximum(action[carrying], THROTTLE)
    score = np.maximum(HARVEST_SCORE_SHARE * harvest, campaign_score)
    score[carrying] = np.maximum(score[carrying], cfg.actions.throttle_campaign_score)
    return action, score


def apply_overrides(action: np.ndarray, score: np.ndarray, index: dict[str, int],
                    overrides: dict[str, str] | None) -> None:
    """Analysts' decisions (account id -> `benign`, `allow` or an action name), in place."""
    for aid, what in (overrides or {}).items():
        i = index.get(aid)
        if i is None:
            continue
        if what in ("benign", "allow"):
            action[i] = ALLOW
            score[i] = 0.0
        elif what in ACTION_NAMES:
            action[i] = ACTION_NAMES.index(what)


def solo_throttles(cfg: DetectConfig, modules: Sequence[Evidence],
                   tables: dict[str, EvidenceTable], action: np.ndarray,
                   score: np.ndarray) -> None:
    """Throttle (in place) every account a `solo` module's table says `throttles`; its score
    is at least the campaign throttle score."""
    for mod in modules:
        if mod.role == "solo":
            hit = tables[mod.name]["throttles"]
            action[hit] = np.maximum(action[hit], THROTTLE)
            score[hit] = np.maximum(score[hit], cfg.actions.throttle_campaign_score)
