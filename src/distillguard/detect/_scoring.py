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

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from distillguard.detect._config import DetectConfig
from distillguard.detect._state import DAY_US, LINK_KINDS, TEMPLATE_KINDS, DetectorState

ALLOW, MONITOR, THROTTLE, BLOCK = 0, 1, 2, 3

# Template keys are facets of one signal (the prompt); every other kind of link stands alone.
_FAMILY_NAMES = ("template", "ip", "payment", "email", "created")
_FAMILY = np.array(
    [_FAMILY_NAMES.index("template" if k in TEMPLATE_KINDS else k) for k in LINK_KINDS], np.int64
)
ACTION_NAMES = ("allow", "monitor", "throttle", "block")


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
    suspicious_pairs: np.ndarray  # (kind index, key code, account) rows behind the campaigns


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def harvest_features(state: DetectorState, cfg: DetectConfig) -> dict[str, np.ndarray]:
    """Each feature in [0, 1], one value per account."""
    m = state.size
    c = {k: v[:m].astype(np.float64) for k, v in state.counters.items()}
    n = np.maximum(c["n"], 1.0)
    w = cfg.harvest
    span_days = np.maximum((state.now_us - state.first_ts[:m]) / DAY_US, 1.0)
    rate = c["n"] / span_days
    f_volume = np.clip(
        np.log(np.maximum(rate, 1e-9) / w.volume_floor_per_day)
        / np.log(w.volume_full_per_day / w.volume_floor_per_day),
        0.0,
        1.0,
    )
    template = np.zeros(m)
    for kind in TEMPLATE_KINDS:
        template = np.maximum(template, state.acct_maxcount[kind][:m] / n)
    # A human repeats a prompt now and then; a script repeats its template all the time.
    template = np.where(c["n"] >= w.min_events, template, 0.0)
    night_share = c["night"] / n
    age_days = (state.first_ts[:m] - state.created_us[:m]) / DAY_US
    return {
        "volume": f_volume,
        "rate_per_day": rate,
        "single_turn": c["single"] / n,
        "elicitation": np.clip((c["cot"] + c["rubric"]) / n, 0.0, 1.0),
        "focus": np.clip((c["code"] + c["math"] + c["tool"]) / n, 0.0, 1.0),
        "template": template,
        "sdk": 1.0 - c["browser"] / n,
        "night": np.clip((night_share - 0.08) / 0.17, 0.0, 1.0),
        "night_share": night_share,
        "capped": c["capped"] / n,
        "release": np.clip(c["release"] / n / 0.3, 0.0, 1.0),
        "new_account": np.where(np.isnan(age_days), 0.0, (age_days < 14).astype(np.float64)),
        "risky_channel": state.risky_channel[:m].astype(np.float64),
        "unverified": 1.0 - state.verified[:m].astype(np.float64),
        "ip_churn": np.clip((state.acct_distinct["ip"][:m] - 1) / 4.0, 0.0, 1.0),
        "events": c["n"],
    }


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


def assess(state: DetectorState, cfg: DetectConfig,
           overrides: dict[str, str] | None = None) -> Assessment:
    """Score every account the state knows and decide its action."""
    m = state.size
    feats = harvest_features(state, cfg)
    h = harvest_profile(feats, cfg)
    lk = cfg.links
    act = cfg.actions

    pairs = state.shared_pairs()
    component = np.full(m, -1, np.int64)
    comp_kinds: dict[int, list[str]] = {}
    comp_size: dict[int, int] = {}
    campaign_score = np.zeros(m)
    suspicious = np.zeros((0, 3), np.int64)
    linked = np.zeros(m, bool)
    if len(pairs):
        kind_idx, key, acct = pairs[:, 0], pairs[:, 1], pairs[:, 2]
        # One id per (kind, key): keys of different kinds never merge.
        gid = kind_idx * (1 << 40) + key
        uniq, inv = np.unique(gid, return_inverse=True)
        members = np.bincount(inv)
        mean_h = np.bincount(inv, weights=h[acct]) / members
        churn = np.bincount(inv, weights=feats["ip_churn"][acct]) / members
        is_ip = (uniq // (1 << 40)) == LINK_KINDS.index("ip")
        # A NAT (classroom, office) shows one address per account; a proxy pool rotates them.
        ip_ok = ~is_ip | (churn * 4 + 1 >= lk.nat_max_churn) | (mean_h >= 0.6)
        sus_key = (members >= lk.min_accounts) & (mean_h >= lk.suspicious_mean_harvest) & ip_ok
        keep = sus_key[inv] & (h[acct] >= act.min_member_harvest)
        linked[acct[keep]] = True
        # An account joins a campaign only when two independent kinds of link tie it in (a
        # shared benchmark prompt alone makes an evaluation runner look like a member).
        fam = _FAMILY[kind_idx]
        fam_pairs = np.unique(acct[keep] * len(_FAMILY_NAMES) + fam[keep])
        n_fam = np.bincount(fam_pairs // len(_FAMILY_NAMES), minlength=m)
        keep &= n_fam[acct] >= lk.min_link_families
        suspicious = pairs[keep]
        if len(suspicious):
            k_inv = inv[keep]
            n_nodes = m + len(uniq)
            graph = coo_matrix(
                (np.ones(len(suspicious)), (suspicious[:, 2], m + k_inv)), shape=(n_nodes, n_nodes)
            )
            _, labels = connected_components(graph, directed=False)
            acct_in = np.zeros(m, bool)
            acct_in[suspicious[:, 2]] = True
            comp_of_acct = np.where(acct_in, labels[:m], -1)
            for lab in np.unique(comp_of_acct[comp_of_acct >= 0]):
                idx = np.flatnonzero(comp_of_acct == lab)
                size = len(idx)
                if size < lk.min_accounts:
                    continue
                kinds_here = np.unique(suspicious[np.isin(suspicious[:, 2], idx), 0])
                kind_names = sorted({LINK_KINDS[int(k)] for k in kinds_here})
                families = {_FAMILY_NAMES[_FAMILY[int(k)]] for k in kinds_here}
                mh = float(h[idx].mean())
                size_factor = 1.0 - np.exp(-size / 4.0)
                kinds_factor = min(1.0, 0.55 + 0.15 * len(families))
                cid = int(lab)
                component[idx] = cid
                campaign_score[idx] = mh * size_factor * kinds_factor
                comp_kinds[cid] = kind_names
                comp_size[cid] = size

    action = np.full(m, ALLOW, np.int64)
    action[h >= act.monitor_harvest] = MONITOR
    in_comp = component >= 0
    action[in_comp | linked] = MONITOR
    size_arr = np.zeros(m, np.int64)
    for cid, size in comp_size.items():
        size_arr[component == cid] = size
    throttle = in_comp & (campaign_score >= act.throttle_campaign_score) & (size_arr >= lk.min_accounts)
    block = (
        in_comp
        & (campaign_score >= act.block_campaign_score)
        & (size_arr >= act.min_campaign_accounts)
        & (h >= act.min_member_harvest)
    )
    action[throttle] = THROTTLE
    action[block] = BLOCK
    score = np.maximum(0.7 * h, campaign_score)
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
    )
