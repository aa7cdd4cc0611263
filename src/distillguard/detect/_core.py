"""The decision core: from the detector's state to an `Assessment`, one call per decision.

Two kinds of evidence are kept apart on purpose. The *harvest profile* (`_profile`) says how
much one account's traffic looks like data collection; legitimate heavy users score high on it
too, so on its own it never goes past `monitor`. *Coordination* says that accounts act as one;
each kind of it is an evidence module (`_evidence`) with its own table. Only the two together
(a campaign of harvest-like accounts that enough evidence ties together) throttle or block.

A decision runs in steps:

1. the profile of every account, and of the crowded shared keys (pooled traffic);
2. the link modules say which keys are suspicious; the link tracker counts each account's
   pairs on them (`_links`);
3. every module returns its table; `_decision.join` says who joins a campaign;
4. campaigns are the connected components of the joined accounts' pairs, scored by their
   pooled profile (a throttled-not-blocked one also by its infrastructure groups);
5. small campaigns that only a template's own traffic gives away (`_cells`);
6. `_decision.actions`, then carriers of blocked campaigns (`_carriers`), the evidence that
   throttles one account on its own (`solo` modules: rarity) and the analysts' overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillguard.detect._carriers import Carriers
from distillguard.detect._cells import Cells
from distillguard.detect._config import DetectConfig
from distillguard.detect._decision import (
    THROTTLE,
    Join,
    actions,
    apply_overrides,
    carried,
    join,
    solo_throttles,
)
from distillguard.detect._evidence import (
    AccountEvidence,
    CampaignCarriers,
    CampaignContext,
    CampaignEvidence,
    CarrierContext,
    CarrierEvidence,
    Context,
    Evidence,
    EvidenceTable,
    KeyContext,
    LinkEvidence,
    RareEvidence,
    SmallCampaigns,
    SoloContext,
    SoloEvidence,
    build_modules,
)
from distillguard.detect._links import LinkTracker, PairIndex, key_groups
from distillguard.detect._profile import (
    KeyProfileTracker,
    account_totals,
    campaign_scores,
    features_from_totals,
    harvest_profile,
    pooled_totals,
)
from distillguard.detect._rarity import Rarity
from distillguard.detect._state import (
    IP_CHURN_FULL,
    IS_TEMPLATE_LINK,
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_KEY,
    DetectorState,
)


@dataclass
class Assessment:
    """Scores and actions for every account in the state, indexed like `state.ids`."""

    features: dict[str, np.ndarray]
    harvest: np.ndarray
    component: np.ndarray  # -1 when in no campaign
    campaign_score: np.ndarray  # per account: the score of its campaign (0 if none)
    component_kinds: dict[int, list[str]]
    component_size: dict[int, int]
    score: np.ndarray
    action: np.ndarray
    suspicious_pairs: np.ndarray  # (link kind, key code, account, key sid) behind the campaigns
    # Accounts that carry a campaign's traffic beside their own (see `find_carriers`).
    carriers: Carriers = field(default_factory=lambda: Carriers.none(0))
    # Small campaigns tied by a template and their carriers (see `_cells`); per cell, the
    # campaign (component) it is reported as.
    cells: Cells = field(default_factory=lambda: Cells.none(0))
    cell_campaign: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Each evidence module's table (by module name), and how they combined.
    evidence: dict[str, EvidenceTable] = field(default_factory=dict)
    join: Join | None = None
    # Evidence weighed by how rare it is among established accounts (see `_rarity`).
    rarity: Rarity = field(default_factory=lambda: Rarity.none(0))

    @property
    def sync_key(self) -> np.ndarray:
        """Per account: the synchronised key it keeps the clock of (-1 if none)."""
        t = self.evidence.get("sync")
        return t["key"] if t is not None else np.full(len(self.action), -1, np.int64)


@dataclass
class _Campaigns:
    """The campaigns of one decision so far, per account and per campaign id."""

    component: np.ndarray  # per account: its campaign (-1: none)
    score: np.ndarray  # per account: its campaign's score (0: none)
    block_score: np.ndarray  # per account: its infrastructure group's score where it decides
    kinds: dict[int, list[str]]  # per campaign: the kinds of link in it
    size: dict[int, int]  # per campaign: its accounts

    @classmethod
    def empty(cls, m: int) -> _Campaigns:
        return cls(np.full(m, -1, np.int64), np.zeros(m), np.zeros(m), {}, {})

    def add_small(self, t: EvidenceTable, campaigns: tuple[list[list[str]], np.ndarray],
                  first_id: int) -> np.ndarray:
        """Make a `small_campaign` module's cells campaigns `first_id`, ...; their ids (none
        when no account is in one)."""
        inside = t["cell"] >= 0
        if not inside.any():
            return np.zeros(0, np.int64)
        kinds, sizes = campaigns
        ids = first_id + np.arange(len(kinds))
        left = np.unique(self.component[inside & (self.component >= 0)])
        self.component[inside] = ids[t["cell"][inside]]
        self.block_score[inside] = 0.0  # (as for accounts in no campaign before)
        self._shrink(left)
        self.score[inside] = t["score"][inside]
        for k, cid in enumerate(ids.tolist()):
            self.kinds[cid] = kinds[k]
            self.size[cid] = int(sizes[k])
        return ids

    def _shrink(self, left: np.ndarray) -> None:
        """Campaigns some of whose accounts moved to another: their size now, and gone when
        none is left."""
        for cid in left.tolist():
            n = int((self.component == cid).sum())
            if n:
                self.size[cid] = n
            else:
                self.size.pop(cid, None)
                self.kinds.pop(cid, None)

    def account_sizes(self) -> np.ndarray:
        """Per account: the size of its campaign (0: none)."""
        out = np.zeros(len(self.component), np.int64)
        inside = self.component >= 0
        if self.size:
            sizes = np.zeros(max(self.size) + 1, np.int64)
            for cid, n in self.size.items():
                sizes[cid] = n
            out[inside] = sizes[self.component[inside]]
        return out


class DecisionCore:
    """The evidence modules and the trackers that make each decision cost what changed.

    Args:
        cfg: thresholds and weights; each module reads its `[evidence.*]` section.
    """

    def __init__(self, cfg: DetectConfig) -> None:
        self.cfg = cfg
        self.modules: list[Evidence] = build_modules(cfg)
        self.links = LinkTracker()
        self.profiles = KeyProfileTracker()
        # Per account: throttled or blocked by the last decision (what newcomers are weighed
        # against: the keys a flagged campaign holds, `[evidence.thin]`).
        self.flagged = np.zeros(0, bool)

    def decide(self, state: DetectorState, overrides: dict[str, str] | None = None,
               with_pairs: bool = True) -> Assessment:
        """Score every account the state knows and decide its action.

        Args:
            state: what the detector has seen (the same state at every call).
            overrides: account id -> analyst decision.
            with_pairs: fill `suspicious_pairs` (the evidence; a replay only needs it at the end).
        """
        cfg, links = self.cfg, self.links
        m = state.size
        totals = account_totals(state)
        feats = features_from_totals(totals, cfg)
        h = harvest_profile(feats, cfg)
        lk = cfg.links
        act = cfg.actions

        camp = _Campaigns.empty(m)
        suspicious = np.zeros((0, 4), np.int64)
        cells = Cells.none(m)
        cell_campaign = np.zeros(0, np.int64)
        tables = {mod.name: mod.off(m) for mod in self.modules}
        decided = join(self.modules, tables, m)
        sus_key = np.zeros(state.shared_keys, bool)
        if state.shared_keys:
            n_keys = state.shared_keys
            # A key is judged by the pooled profile of the traffic behind it: early in a
            # campaign each account has sent only a request or two, but together they have
            # sent hundreds, and that is what gives them away. Only keys with enough accounts.
            est = feats["events"] >= cfg.harvest.min_events
            members = state.key_accounts[state.sid_code[:n_keys]]
            crowd = np.flatnonzero(members >= lk.min_accounts)
            pairs = state.shared_pairs()
            is_ip = state.sid_link[:n_keys] == LINK_KINDS.index("ip")
            # Mean churn of an address's accounts (`features["ip_churn"]`; kept as whole units
            # of 1 / IP_CHURN_FULL).
            churn = links.churn.update(pairs, state.ip_count[:m], n_keys, links.by_acct)
            churn = churn / IP_CHURN_FULL
            churn = churn / np.maximum(members, 1)
            key_h = np.zeros(n_keys)
            key_h[crowd] = self.profiles.update(
                state, totals, cfg, crowd, np.where(is_ip, churn, 0.0)[crowd])
            candidate = (members >= lk.min_accounts) & (key_h >= lk.suspicious_mean_harvest)
            keys = KeyContext(state, cfg, members, key_h, churn, candidate)
            sus_key = self._suspicious(keys, n_keys)
            # An established account joins only with a harvest-like profile of its own, or
            # when most of what it asks for is reasoning traces, grades or training data (a
            # careful operator can keep volume, clients and hours human; not what it asks for).
            eligible = ~est | (h >= act.min_member_harvest) | (
                feats["elicitation"] >= lk.member_min_elicitation
            )
            link_pairs = links.counts(pairs, sus_key, eligible)
            flagged = np.zeros(m, bool)
            last = getattr(self, "flagged", flagged)  # (a checkpoint written before it was kept)
            flagged[: min(m, len(last))] = last[:m]
            ctx = Context(keys, feats, h, est, eligible, sus_key, link_pairs, pairs, links.by_key,
                          links.by_acct, flagged)
            for mod in self.modules:
                if isinstance(mod, AccountEvidence) and mod.enabled:
                    tables[mod.name] = mod.assess(ctx)
            decided = join(self.modules, tables, m)
            joined = decided.joined
            # Campaigns: connected components of the joined accounts' pairs on suspicious keys.
            # (Keys with many accounts are the stable ones to hold the spanning forest together.)
            labels = links.components(joined, 1.0 / (1.0 + members))
            if with_pairs:
                suspicious = pairs[links.by_key.select(pairs, sus_key)]
                owner = suspicious[:, PAIR_ACCOUNT]
                suspicious = suspicious[eligible[owner] & joined[owner]]
            _graph_campaigns(state, cfg, camp, labels, link_pairs > 0, decided, totals, pairs,
                             sus_key, eligible, links.by_acct)
            # Small campaigns that the graph misses (see `_cells`), each a campaign of its own.
            known = np.full(n_keys, np.nan)
            known[crowd] = key_h[crowd]
            next_id = max(max(camp.size, default=-1) + 1,
                          int(labels.max()) + 1 if len(labels) else 0)
            for mod in self.modules:
                if isinstance(mod, CampaignEvidence) and mod.enabled:
                    # (Members of a throttled or blocked campaign: a template key of theirs
                    # that a reseller carries gives the reseller away.)
                    t = mod.assess(CampaignContext(
                        account=ctx, totals=totals, known_key_harvest=known,
                        free=camp.component < 0,
                        flagged=(camp.component >= 0)
                        & (camp.score >= act.throttle_campaign_score),
                        by_acct=links.by_acct))
                    tables[mod.name] = t
                    ids = camp.add_small(t, mod.campaigns(state), next_id)
                    next_id += len(ids)
                    if isinstance(mod, SmallCampaigns):
                        cells = mod.last
                        cell_campaign = ids

        in_cell = np.zeros(m, bool)
        carrying = np.zeros(m, bool)
        for mod in self.modules:
            if isinstance(mod, CampaignEvidence):
                in_cell |= tables[mod.name]["cell"] >= 0
                carrying |= tables[mod.name]["carries"]
        component, campaign_score = camp.component, camp.score
        action, block = actions(cfg, h, component, campaign_score, camp.block_score,
                                camp.account_sizes(), in_cell,
                                decided.linked | state.partner[:m], decided.tied)
        carriers = Carriers.none(m)
        for mod in self.modules:
            if isinstance(mod, CarrierEvidence) and mod.enabled:
                t = mod.assess(CarrierContext(state, cfg, state.shared_pairs(), component, block,
                                              links.by_key, links.by_acct))
                tables[mod.name] = t
                carrying |= t["carries"]
                if isinstance(mod, CampaignCarriers):
                    carriers = mod.last
        action, score = carried(cfg, action, h, campaign_score, carrying)
        rare = Rarity.none(m)
        for mod in self.modules:
            if isinstance(mod, SoloEvidence) and mod.enabled:
                tables[mod.name] = mod.assess(
                    SoloContext(state, cfg, feats, sus_key, links.by_key,
                                links.by_acct))
                if isinstance(mod, RareEvidence):
                    rare = mod.last
        solo_throttles(cfg, self.modules, tables, action, score)
        apply_overrides(action, score, state.index, overrides)
        self.flagged = action >= THROTTLE
        return Assessment(
            features=feats,
            harvest=h,
            component=component,
            campaign_score=campaign_score,
            component_kinds=camp.kinds,
            component_size=camp.size,
            score=score,
            action=action,
            suspicious_pairs=suspicious,
            carriers=carriers,
            cells=cells,
            cell_campaign=cell_campaign,
            evidence=tables,
            join=decided,
            rarity=rare,
        )

    def _suspicious(self, keys: KeyContext, n_keys: int) -> np.ndarray:
        """Per shared key: suspicious for the link module of its kind (none: never)."""
        out = np.zeros(n_keys, bool)
        kind = keys.state.sid_link[:n_keys]
        for mod in self.modules:
            if isinstance(mod, LinkEvidence) and mod.enabled:
                mine = np.zeros(len(LINK_KINDS), bool)
                mine[[LINK_KINDS.index(k) for k in mod.kinds]] = True
                out |= mine[kind] & mod.suspicious(keys)
        return out


def _graph_campaigns(state: DetectorState, cfg: DetectConfig, camp: _Campaigns,
                     labels: np.ndarray, on: np.ndarray, decided: Join,
                     totals: dict[str, np.ndarray], pairs: np.ndarray, sus_key: np.ndarray,
                     eligible: np.ndarray, by_acct: PairIndex) -> None:
    """The connected components (`labels`) with `links.min_accounts` accounts or more become
    campaigns in `camp`, scored by their pooled profile; `on` says which kinds of link each
    account has on suspicious keys."""
    lk, act = cfg.links, cfg.actions
    members_idx = np.flatnonzero(labels >= 0)
    if not len(members_idx):
        return
    lab = labels[members_idx]
    n_lab = int(lab.max()) + 1
    size = np.bincount(lab, minlength=n_lab)
    mh = harvest_profile(
        features_from_totals(pooled_totals(totals, lab, members_idx, n_lab), cfg), cfg
    )
    kinds_in = np.column_stack(
        [np.bincount(lab, weights=on[members_idx, k], minlength=n_lab) > 0
         for k in range(len(LINK_KINDS))]
    )
    comp_score = campaign_scores(mh, size, _kinds_present(decided, lab, members_idx, n_lab))
    ok = size >= lk.min_accounts
    acct_ok = ok[lab]
    camp.component[members_idx[acct_ok]] = lab[acct_ok]
    camp.score[members_idx[acct_ok]] = comp_score[lab[acct_ok]]
    for cid in np.flatnonzero(ok).tolist():
        camp.kinds[cid] = [LINK_KINDS[k] for k in np.flatnonzero(kinds_in[cid])]
        camp.size[cid] = int(size[cid])
    # Operators touch through shared public prompt sets, so during the replay one component
    # can hold several campaigns whose pooled score the stealthiest dilutes below the block
    # line. Where a component is throttled but not blocked, its infrastructure groups (linked
    # by addresses, cards, e-mail domains, sign-up bursts) are scored on their own for the
    # block.
    hidden = ok & (comp_score >= act.throttle_campaign_score) & (
        comp_score < act.block_campaign_score)
    if hidden.any():
        inside = members_idx[acct_ok & hidden[lab]]
        n_keys = state.shared_keys
        camp.block_score[inside] = _infra_scores(
            state, pairs, inside, sus_key & ~IS_TEMPLATE_LINK[state.sid_link[:n_keys]],
            eligible, decided, totals, cfg, by_acct)[inside]


def _kinds_present(decided: Join, group: np.ndarray, member: np.ndarray,
                   n_groups: int) -> np.ndarray:
    """Per group: how many kinds of link (link modules) fire for at least one member."""
    present = np.column_stack(
        [np.bincount(group, weights=decided.link_fires[member, j], minlength=n_groups) > 0
         for j in range(len(decided.link_names))]
    )
    out: np.ndarray = present.sum(axis=1)
    return out


def _infra_scores(state: DetectorState, pairs: np.ndarray, accounts: np.ndarray,
                  infra_key: np.ndarray, eligible: np.ndarray, decided: Join,
                  totals: dict[str, np.ndarray], cfg: DetectConfig, by_acct: PairIndex,
                  ) -> np.ndarray:
    """Per account (0 elsewhere): the campaign score of its infrastructure group, the
    connected component of `accounts` through their suspicious non-template keys
    (`infra_key`); groups under `actions.min_campaign_accounts` score 0."""
    m = state.size
    out = np.zeros(m)
    sel = np.zeros(m, bool)
    sel[accounts] = True
    rows = pairs[by_acct.select(pairs, sel & eligible, ordered=False)]
    rows = rows[infra_key[rows[:, PAIR_KEY]]]
    if not len(rows):
        return out
    group = key_groups(rows, m, state.shared_keys)
    grouped = np.unique(rows[:, PAIR_ACCOUNT])
    lab = group[grouped]
    _, lab = np.unique(lab, return_inverse=True)
    n_lab = int(lab.max()) + 1
    size = np.bincount(lab, minlength=n_lab)
    mh = harvest_profile(features_from_totals(pooled_totals(totals, lab, grouped, n_lab), cfg), cfg)
    score = campaign_scores(mh, size, _kinds_present(decided, lab, grouped, n_lab))
    score[size < cfg.actions.min_campaign_accounts] = 0.0
    out[grouped] = score[lab]
    return out
