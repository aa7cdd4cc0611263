"""From state to decisions: a harvest profile per account, campaigns from shared keys, actions.

Two kinds of evidence are kept apart on purpose. The *harvest profile* says how much one
account's traffic looks like data collection (volume, scripted clients, reasoning elicitation,
round-the-clock activity, ...). Legitimate heavy users (an enterprise batch job, an evaluation
runner) score high on it, so on its own it never goes past `monitor`. *Coordination* says that
accounts act as one: they share proxy addresses, templates, payment instruments, sign-up bursts.
Classrooms share some of that too, but their members do not look like harvesters. Only the two
together (a campaign of harvest-like accounts bound by more than one kind of link) throttle or
block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillguard.detect._carriers import Carriers, CarrierTracker
from distillguard.detect._cells import Cells, CellTracker
from distillguard.detect._config import DetectConfig
from distillguard.detect._links import LinkTracker, PairIndex, key_groups
from distillguard.detect._rarity import Rarity, RarityTracker
from distillguard.detect._state import (
    COUNTERS,
    DAY_US,
    IS_TEMPLATE_LINK,
    LINK_KINDS,
    TEMPLATE_KINDS,
    DetectorState,
)
from distillguard.detect._sync import Sync, SyncTracker

ALLOW, MONITOR, THROTTLE, BLOCK = 0, 1, 2, 3

# Template keys are facets of one signal (the prompt); every other kind of link stands alone.
_FAMILY_NAMES = ("template", "ip", "payment", "email", "created")
_FAMILY = np.array(
    [_FAMILY_NAMES.index("template" if k in TEMPLATE_KINDS else k) for k in LINK_KINDS], np.int64
)
ACTION_NAMES = ("allow", "monitor", "throttle", "block")
_ACCOUNT_LINKS = [i for i, k in enumerate(LINK_KINDS) if _FAMILY_NAMES[_FAMILY[i]] in
                  ("payment", "email", "created")]


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
    # Per account: the synchronised key (shared-key id) it keeps the clock of, -1 if none;
    # and the per-key measures (see `_sync`).
    sync_key: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sync: Sync = field(default_factory=lambda: Sync.none(0))
    # Small campaigns tied by a template and their carriers (see `_cells`); per cell, the
    # campaign (component) it is reported as.
    cells: Cells = field(default_factory=lambda: Cells.none(0))
    cell_campaign: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Evidence weighed by how rare it is among established accounts (see `_rarity`).
    rarity: Rarity = field(default_factory=lambda: Rarity.none(0))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


# Per-account quantities that add up over a group of accounts, and ones that average.
_SUMMED = (*COUNTERS, "template_top")
_AVERAGED = ("rate", "new_account", "risky_channel", "unverified", "ip_churn")


def account_totals(state: DetectorState) -> dict[str, np.ndarray]:
    """Raw per-account quantities, before they are turned into features."""
    m = state.size
    t = {k: v[:m].astype(np.float64) for k, v in state.counters.items()}
    t["template_top"] = state.template_max[:m].astype(np.float64)
    span_days = np.maximum((state.now_us - state.first_ts[:m]) / DAY_US, 1.0)
    t["rate"] = t["n"] / span_days
    age_days = (state.first_ts[:m] - state.created_us[:m]) / DAY_US
    t["new_account"] = np.where(np.isnan(age_days), 0.0, (age_days < 14).astype(np.float64))
    t["risky_channel"] = state.risky_channel[:m].astype(np.float64)
    t["unverified"] = 1.0 - state.verified[:m].astype(np.float64)
    t["ip_churn"] = np.clip((state.ip_count[:m] - 1) / 4.0, 0.0, 1.0)
    return t


def pooled_totals(t: dict[str, np.ndarray], group: np.ndarray, member: np.ndarray,
                  n_groups: int) -> dict[str, np.ndarray]:
    """The totals of each group: sums of the summed quantities, means of the averaged ones.

    `group[i]` and `member[i]` say that account `member[i]` belongs to group `group[i]`: a
    group's pooled profile is what all its members sent, taken together.
    """
    size = np.maximum(np.bincount(group, minlength=n_groups), 1)
    out: dict[str, np.ndarray] = {k: np.bincount(group, weights=t[k][member], minlength=n_groups) for k in _SUMMED}
    for k in _AVERAGED:
        out[k] = np.bincount(group, weights=t[k][member], minlength=n_groups) / size
    return out


def _volume(rate: np.ndarray, cfg: DetectConfig) -> np.ndarray:
    w = cfg.harvest
    out: np.ndarray = np.clip(
        np.log(np.maximum(rate, 1e-9) / w.volume_floor_per_day)
        / np.log(w.volume_full_per_day / w.volume_floor_per_day),
        0.0,
        1.0,
    )
    return out


def features_from_totals(t: dict[str, np.ndarray], cfg: DetectConfig) -> dict[str, np.ndarray]:
    """Each feature in [0, 1], from an account's (or a pooled group's) totals."""
    w = cfg.harvest
    n = np.maximum(t["n"], 1.0)
    f_volume = _volume(t["rate"], cfg)
    # A human repeats a prompt now and then; a script repeats its template all the time.
    template = np.where(t["n"] >= w.min_events, t["template_top"] / n, 0.0)
    night_share = t["night"] / n
    return {
        "volume": f_volume,
        "rate_per_day": t["rate"],
        "single_turn": t["single"] / n,
        "elicitation": np.clip((t["cot"] + t["rubric"] + t["datagen"]) / n, 0.0, 1.0),
        "focus": np.clip((t["coding"] + t["math"] + t["tool"]) / n, 0.0, 1.0),
        "template": template,
        "sdk": 1.0 - t["browser"] / n,
        "night": np.clip((night_share - 0.08) / 0.17, 0.0, 1.0),
        "night_share": night_share,
        "capped": t["capped"] / n,
        "release": np.clip(t["release"] / n / 0.3, 0.0, 1.0),
        "new_account": t["new_account"],
        "risky_channel": t["risky_channel"],
        "unverified": t["unverified"],
        "ip_churn": t["ip_churn"],
        "events": t["n"],
    }


def key_profiles(state: DetectorState, totals: dict[str, np.ndarray],
                 cfg: DetectConfig, sids: np.ndarray | None = None,
                 ip_churn: np.ndarray | None = None) -> np.ndarray:
    """Harvest profile of shared keys: all of them (indexed by shared-key id), or `sids`.

    Address and template keys carry their own traffic totals (kept incrementally by the
    state); payment, e-mail and sign-up keys pool the totals of their accounts. `ip_churn`
    (aligned with `sids`) is the mean address churn of each address key's accounts: behind a
    proxy pool they rotate, behind a NAT each keeps its one address.
    """
    if sids is None:
        sids = np.arange(state.shared_keys)
    n_keys = len(sids)
    code = state.sid_code[sids]
    members = np.maximum(state.key_accounts[code], 1).astype(np.float64)
    kc = state.key_counts[code]
    t = {name: kc[:, i] for i, name in enumerate(COUNTERS)}
    # Traffic on a template key repeats that template by definition; an address does not.
    is_template = IS_TEMPLATE_LINK[state.sid_link[sids]]
    t["template_top"] = np.where(is_template, t["n"], 0.0)
    t["rate"] = _key_rate(state, code, t["n"], members)
    for i, name in enumerate(("new_account", "risky_channel", "unverified")):
        t[name] = state.key_static[code, i] / members
    t["ip_churn"] = np.zeros(n_keys) if ip_churn is None else ip_churn
    sub = state.shared_account_pairs()
    if len(sub):
        at = np.full(state.shared_keys, -1, np.int64)
        at[sids] = np.arange(n_keys)
        sub = sub[at[sub[:, 3]] >= 0]
    if len(sub):
        # Pooled over the few account keys only, numbered densely among themselves (as
        # np.unique would, without sorting the pairs).
        key_of = at[sub[:, 3]]
        present = np.zeros(n_keys, bool)
        present[key_of] = True
        acct_keys = np.flatnonzero(present)
        group = (np.cumsum(present) - 1)[key_of]
        pooled = pooled_totals(totals, group, sub[:, 2], len(acct_keys))
        for name, values in pooled.items():
            t[name] = t[name].copy()
            t[name][acct_keys] = values
    return harvest_profile(features_from_totals(t, cfg), cfg)


def _key_rate(state: DetectorState, code: np.ndarray, n: np.ndarray,
              members: np.ndarray) -> np.ndarray:
    """Requests per day and account on keys `code`, carrying `n` requests, `members` accounts."""
    span_days = np.maximum((state.now_us - state.key_first_ts[code]) / DAY_US, 1.0)
    out: np.ndarray = n / span_days / members
    return out


class KeyProfileTracker:
    """`key_profiles` of the crowded keys, kept from one call to the next (exact).

    A key's profile changes with its traffic, accounts and address churn, and with the clock
    only through its volume (requests per day since its first): the profiles are recomputed
    for keys changed since the last call (`state.key_changed`), keys whose churn or volume
    moved, and the account keys (payment, e-mail, sign-up), which pool their accounts' totals.
    """

    def __init__(self) -> None:
        self.h = np.zeros(0)  # per shared key id, valid where `volume` is not nan
        self.volume = np.zeros(0)
        self.churn = np.zeros(0)
        self.seen = 0  # `state.applied` at the last call

    def update(self, state: DetectorState, totals: dict[str, np.ndarray], cfg: DetectConfig,
               sids: np.ndarray, ip_churn: np.ndarray) -> np.ndarray:
        """The profiles of keys `sids` (`ip_churn` aligned with them), as `key_profiles`."""
        k = state.shared_keys
        if len(self.h) < k:
            grow = k - len(self.h)
            self.h = np.concatenate([self.h, np.zeros(grow)])
            self.volume = np.concatenate([self.volume, np.full(grow, np.nan)])
            self.churn = np.concatenate([self.churn, np.zeros(grow)])
        code = state.sid_code[sids]
        members = np.maximum(state.key_accounts[code], 1).astype(np.float64)
        volume = _volume(_key_rate(state, code, state.key_counts[code, 0], members), cfg)
        redo = (
            (state.key_changed[code] > self.seen)
            | np.isin(state.sid_link[sids], _ACCOUNT_LINKS)
            | (volume != self.volume[sids])  # also true where never computed (nan)
            | (ip_churn != self.churn[sids])
        )
        at = sids[redo]
        self.h[at] = key_profiles(state, totals, cfg, at, ip_churn[redo])
        self.volume[at] = volume[redo]
        self.churn[at] = ip_churn[redo]
        self.seen = state.applied
        out: np.ndarray = self.h[sids]
        return out


def harvest_features(state: DetectorState, cfg: DetectConfig) -> dict[str, np.ndarray]:
    """Each feature in [0, 1], one value per account."""
    return features_from_totals(account_totals(state), cfg)


WEIGHTED = ("volume", "single_turn", "elicitation", "focus", "template", "sdk", "night",
            "capped", "release", "new_account", "risky_channel", "unverified", "ip_churn")


def harvest_profile(feats: dict[str, np.ndarray], cfg: DetectConfig) -> np.ndarray:
    w = cfg.harvest
    z = np.full(feats["events"].shape, w.bias)
    for name in WEIGHTED:
        z = z + getattr(w, name) * feats[name]
    h = _sigmoid(z)
    # Thin evidence: a handful of events cannot make an account look like a harvester.
    confidence = np.minimum(1.0, feats["events"] / max(1, w.min_events))
    out: np.ndarray = h * confidence
    return out


def campaign_scores(pooled_harvest: np.ndarray, size: np.ndarray,
                    families: np.ndarray) -> np.ndarray:
    """A group's campaign score: its pooled harvest profile, discounted for few accounts and
    for few independent kinds of link."""
    out: np.ndarray = (pooled_harvest * (1.0 - np.exp(-size / 4.0))
                       * np.minimum(1.0, 0.55 + 0.15 * families))
    return out


def _infra_scores(state: DetectorState, pairs: np.ndarray, accounts: np.ndarray,
                  infra_key: np.ndarray, eligible: np.ndarray, has_fam: np.ndarray,
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
    rows = rows[infra_key[rows[:, 3]]]
    if not len(rows):
        return out
    group = key_groups(rows, m, state.shared_keys)
    grouped = np.unique(rows[:, 2])
    lab = group[grouped]
    _, lab = np.unique(lab, return_inverse=True)
    n_lab = int(lab.max()) + 1
    size = np.bincount(lab, minlength=n_lab)
    mh = harvest_profile(features_from_totals(pooled_totals(totals, lab, grouped, n_lab), cfg), cfg)
    fams = np.column_stack([np.bincount(lab, weights=has_fam[grouped, f], minlength=n_lab) > 0
                            for f in range(len(_FAMILY_NAMES))])
    score = campaign_scores(mh, size, fams.sum(axis=1))
    score[size < cfg.actions.min_campaign_accounts] = 0.0
    out[grouped] = score[lab]
    return out


def assess(state: DetectorState, cfg: DetectConfig,
           overrides: dict[str, str] | None = None, links: LinkTracker | None = None,
           with_pairs: bool = True, carrier_tracker: CarrierTracker | None = None,
           sync_tracker: SyncTracker | None = None,
           cell_tracker: CellTracker | None = None,
           profile_tracker: KeyProfileTracker | None = None,
           rarity_tracker: RarityTracker | None = None) -> Assessment:
    """Score every account the state knows and decide its action.

    Args:
        state: what the detector has seen.
        cfg: thresholds and weights.
        overrides: account id -> analyst decision.
        links: the link bookkeeping of earlier calls on this state (with this config), which
            makes a call cost what changed since the last one; None starts afresh.
        with_pairs: fill `suspicious_pairs` (the evidence; a replay only needs it at the end).
        carrier_tracker, sync_tracker, cell_tracker, profile_tracker, rarity_tracker: their
            answers from earlier calls (None: afresh).
    """
    if links is None:
        links = LinkTracker()
    m = state.size
    totals = account_totals(state)
    feats = features_from_totals(totals, cfg)
    h = harvest_profile(feats, cfg)
    lk = cfg.links
    act = cfg.actions

    component = np.full(m, -1, np.int64)
    comp_kinds: dict[int, list[str]] = {}
    comp_size: dict[int, int] = {}
    campaign_score = np.zeros(m)
    suspicious = np.zeros((0, 4), np.int64)
    linked = np.zeros(m, bool)
    # Tied by more than a prompt and a sign-up hour (which strangers can share by chance).
    tied = np.zeros(m, bool)
    sync_key = np.full(m, -1, np.int64)
    sync = Sync.none(state.shared_keys, m)
    cells = Cells.none(m)
    cell_campaign = np.zeros(0, np.int64)
    block_score = np.zeros(m)  # an infrastructure group's score where it decides a block
    if state.shared_keys:
        n_keys = state.shared_keys
        # A key is judged by the pooled profile of the traffic behind it: early in a campaign
        # each account has sent only a request or two, but together they have sent hundreds,
        # and that is what gives them away. Only keys with enough accounts count.
        est = feats["events"] >= cfg.harvest.min_events
        members = state.key_accounts[state.sid_code[:n_keys]]
        crowd = np.flatnonzero(members >= lk.min_accounts)
        pairs = state.shared_pairs()
        is_ip = state.sid_link[:n_keys] == LINK_KINDS.index("ip")
        is_template_key = IS_TEMPLATE_LINK[state.sid_link[:n_keys]]
        # Mean churn of an address's accounts (`features["ip_churn"]` is quarters / 4).
        churn = links.churn.update(pairs, state.ip_count[:m], n_keys, links.by_acct) / 4.0
        churn = churn / np.maximum(members, 1)
        key_h = np.zeros(n_keys)
        key_h[crowd] = (profile_tracker or KeyProfileTracker()).update(
            state, totals, cfg, crowd, np.where(is_ip, churn, 0.0)[crowd])
        candidate = (members >= lk.min_accounts) & (key_h >= lk.suspicious_mean_harvest)
        # A NAT (classroom, office) shows one address per account; a proxy pool rotates them.
        ip_ok = ~is_ip | (churn * 4 + 1 >= lk.nat_max_churn) | (key_h >= 0.6)
        sus_key = candidate & ip_ok
        # An established account joins only with a harvest-like profile of its own, or when
        # most of what it asks for is reasoning traces, grades or training data (a careful
        # operator can keep volume, clients and hours human; not what it asks for).
        eligible = ~est | (h >= act.min_member_harvest) | (
            feats["elicitation"] >= lk.member_min_elicitation
        )
        # Per account and kind of link: its pairs on suspicious keys while it is eligible.
        on = links.counts(pairs, sus_key, eligible) > 0
        linked = on.sum(axis=1) > 0
        # An account joins a campaign only when two independent kinds of link tie it in (a
        # shared benchmark prompt alone makes an evaluation runner look like a member).
        has_fam = np.column_stack(
            [on[:, np.equal(_FAMILY, f)].any(axis=1) for f in range(len(_FAMILY_NAMES))]
        )
        # A fresh, unverified account that keeps asking for reasoning traces, grades or training
        # data counts as a kind of link of its own: account farms open them by the hundred,
        # while a developer trying the API writes code, not requests for training data.
        fresh = (
            (feats["new_account"] >= 1)
            & (feats["unverified"] >= 1)
            & (h >= lk.fresh_min_harvest)
            & (feats["elicitation"] >= lk.fresh_min_elicitation)
        )
        # Accounts that claim many countries but keep one clock on a suspicious key: one
        # operator's schedule (see `_sync`).
        sync_tracker = sync_tracker or SyncTracker()
        sync = sync_tracker.update(state, pairs, sus_key, cfg, links.by_key)
        # (Measured at most hourly: a key that stopped being suspicious since no longer counts.)
        synced_keys = sync.synced & sus_key
        if synced_keys.any():
            acct, sid = sync_tracker.synced_pairs(pairs, links.by_key)
            ok = sus_key[sid] & eligible[acct] & sync.steady[acct]
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
        synced = sync_key >= 0
        # A match with a partner's shared indicators is one more, independent kind of link.
        partner = state.partner[:m]
        n_fam = has_fam.sum(axis=1) + ((fresh | partner | synced) & has_fam.any(axis=1))
        infra = [_FAMILY_NAMES.index(f) for f in ("ip", "payment", "email")]
        tied = has_fam[:, infra].any(axis=1) | fresh | partner | synced
        # A thin account (too few requests for a profile) needs more kinds of link to join.
        need = np.where(est, lk.min_link_families, lk.thin_min_link_families)
        joined = linked & (n_fam >= need)
        # Campaigns: connected components of the joined accounts' pairs on suspicious keys.
        # (Keys with many accounts are the stable ones to hold the spanning forest together.)
        labels = links.components(joined, 1.0 / (1.0 + members))
        if with_pairs:
            suspicious = pairs[links.by_key.select(pairs, sus_key)]
            suspicious = suspicious[eligible[suspicious[:, 2]] & joined[suspicious[:, 2]]]
        members_idx = np.flatnonzero(labels >= 0)
        if len(members_idx):
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
            fams_in = np.column_stack(
                [np.bincount(lab, weights=has_fam[members_idx, f], minlength=n_lab) > 0
                 for f in range(len(_FAMILY_NAMES))]
            )
            comp_score = campaign_scores(mh, size, fams_in.sum(axis=1))
            ok = size >= lk.min_accounts
            acct_ok = ok[lab]
            component[members_idx[acct_ok]] = lab[acct_ok]
            campaign_score[members_idx[acct_ok]] = comp_score[lab[acct_ok]]
            for cid in np.flatnonzero(ok).tolist():
                comp_kinds[cid] = [LINK_KINDS[k] for k in np.flatnonzero(kinds_in[cid])]
                comp_size[cid] = int(size[cid])
            # Operators touch through shared public prompt sets, so during the replay one
            # component can hold several campaigns whose pooled score the stealthiest dilutes
            # below the block line. Where a component is throttled but not blocked, its
            # infrastructure groups (linked by addresses, cards, e-mail domains, sign-up
            # bursts) are scored on their own for the block.
            hidden = ok & (comp_score >= act.throttle_campaign_score) & (
                comp_score < act.block_campaign_score)
            if hidden.any():
                inside = members_idx[acct_ok & hidden[lab]]
                block_score[inside] = _infra_scores(
                    state, pairs, inside, sus_key & ~is_template_key, eligible, has_fam, totals,
                    cfg, links.by_acct)[inside]
        # Small campaigns that only a template's own traffic gives away (see `_cells`).
        known = np.full(n_keys, np.nan)
        known[crowd] = key_h[crowd]
        # (Members of a throttled or blocked campaign: a template key of theirs that a
        # reseller carries gives the reseller away.)
        cells = (cell_tracker or CellTracker()).update(
            state, pairs, known, lambda sids: key_profiles(state, totals, cfg, sids), h,
            component < 0, cfg, links.by_key, links.by_acct,
            (component >= 0) & (campaign_score >= act.throttle_campaign_score),
            feats["elicitation"],
        )
        in_cell = cells.member >= 0
        if in_cell.any():
            first_id = max(comp_size, default=-1) + 1
            first_id = max(first_id, int(labels.max()) + 1 if len(labels) else 0)
            cell_campaign = first_id + np.arange(len(cells.size))
            component[in_cell] = cell_campaign[cells.member[in_cell]]
            campaign_score[in_cell] = cells.key_profile[cells.key][cells.member[in_cell]]
            for k, cid in enumerate(cell_campaign.tolist()):
                tmpl = LINK_KINDS[int(state.sid_link[cells.key[k]])]
                comp_kinds[cid] = sorted({tmpl, *cells.ties[k]})
                comp_size[cid] = int(cells.size[k])

    action = np.full(m, ALLOW, np.int64)
    action[h >= act.monitor_harvest] = MONITOR
    in_comp = component >= 0
    action[in_comp | linked | state.partner[:m]] = MONITOR
    size_arr = np.zeros(m, np.int64)
    if comp_size:
        sizes = np.zeros(max(comp_size) + 1, np.int64)
        for cid, n in comp_size.items():
            sizes[cid] = n
        size_arr[in_comp] = sizes[component[in_comp]]
    throttle = in_comp & (campaign_score >= act.throttle_campaign_score) & (size_arr >= lk.min_accounts)
    # A cell is small by definition; what condemns it is its template's traffic, not its size.
    throttle |= cells.member >= 0
    block = (
        in_comp
        & (np.maximum(campaign_score, block_score) >= act.block_campaign_score)
        & (size_arr >= act.min_campaign_accounts)
        & (h >= act.min_member_harvest)
    )
    block &= cells.member < 0
    action[throttle] = THROTTLE
    # A member tied only by prompts and a sign-up hour is throttled: a stranger who signed up
    # in a campaign's burst hour and sends a popular prompt it also sends looks the same.
    action[block & tied] = BLOCK
    carriers = (carrier_tracker or CarrierTracker()).update(
        state, state.shared_pairs(), component, block, cfg, links.by_key, links.by_acct
    )
    # Throttled, never blocked: the carrier's other traffic may be its customers' own.
    carrying = (carriers.peer >= 0) | (cells.carries >= 0) | (cells.carries_peer >= 0)
    action[carrying] = np.maximum(action[carrying], THROTTLE)
    score = np.maximum(0.7 * h, campaign_score)
    score[carrying] = np.maximum(score[carrying], act.throttle_campaign_score)
    rare = (rarity_tracker or RarityTracker()).update(state, feats, cfg)
    action[rare.flag] = np.maximum(action[rare.flag], THROTTLE)
    score[rare.flag] = np.maximum(score[rare.flag], act.throttle_campaign_score)
    if overrides:
        for aid, what in overrides.items():
            i = state.index.get(aid)
            if i is None:
                continue
            if what in ("benign", "allow"):
                action[i] = ALLOW
                score[i] = 0.0
            elif what in ACTION_NAMES:
                action[i] = ACTION_NAMES.index(what)
    return Assessment(
        features=feats,
        harvest=h,
        component=component,
        campaign_score=campaign_score,
        component_kinds=comp_kinds,
        component_size=comp_size,
        score=score,
        action=action,
        suspicious_pairs=suspicious,
        carriers=carriers,
        sync_key=sync_key,
        sync=sync,
        cells=cells,
        cell_campaign=cell_campaign,
        rarity=rare,
    )
