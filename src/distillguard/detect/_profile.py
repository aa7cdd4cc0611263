"""The harvest profile: how much traffic looks like data collection, per account, group or key.

A logistic score over features in [0, 1] (volume, scripted clients, reasoning elicitation,
capability focus, round-the-clock activity, ...), weighted by `[harvest]` in the config.
Legitimate heavy users (an enterprise batch job, an evaluation runner) score high on it, so on
its own it never goes past `monitor`: the evidence modules (`_evidence`) say who acts as one.
The same profile is taken of one account, of a group's pooled traffic (a campaign) and of a
shared key's traffic (an address, a template).
"""

from __future__ import annotations

import numpy as np

from distillguard.detect._config import DetectConfig
from distillguard.detect._state import (
    COUNTERS,
    DAY_US,
    IP_CHURN_FULL,
    IS_TEMPLATE_LINK,
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_KEY,
    DetectorState,
)

_ACCOUNT_LINKS = [i for i, k in enumerate(LINK_KINDS) if k in ("payment", "email", "created")]
# Per link kind: whether it is an account kind (a lookup: cheaper than np.isin per call).
_IS_ACCOUNT_LINK = np.isin(np.arange(len(LINK_KINDS)), _ACCOUNT_LINKS)

#: An account opened this many days or fewer before its first request is new.
NEW_ACCOUNT_DAYS = 14
#: Share of requests a person sends in their own night (the feature starts above it) and the
#: share above it at which the feature is full.
NIGHT_BASELINE_SHARE = 0.08
NIGHT_FULL_ABOVE = 0.17
#: Share of requests on a model within 48 h of its release at which the feature is full.
RELEASE_FULL_SHARE = 0.3
#: A group's campaign score is discounted for few accounts, by 1 - exp(-size / this) ...
CAMPAIGN_SIZE_SCALE = 4.0
#: ... and for few kinds of link: min(1, base + per_kind * kinds).
CAMPAIGN_KINDS_BASE = 0.55
CAMPAIGN_PER_KIND = 0.15


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
    t["new_account"] = np.where(np.isnan(age_days), 0.0, (age_days < NEW_ACCOUNT_DAYS).astype(np.float64))
    t["risky_channel"] = state.risky_channel[:m].astype(np.float64)
    t["unverified"] = 1.0 - state.verified[:m].astype(np.float64)
    t["ip_churn"] = np.clip((state.ip_count[:m] - 1) / IP_CHURN_FULL, 0.0, 1.0)
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
        "night": np.clip((night_share - NIGHT_BASELINE_SHARE) / NIGHT_FULL_ABOVE, 0.0, 1.0),
        "night_share": night_share,
        "capped": t["capped"] / n,
        "release": np.clip(t["release"] / n / RELEASE_FULL_SHARE, 0.0, 1.0),
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
        sub = sub[at[sub[:, PAIR_KEY]] >= 0]
    if len(sub):
        # Pooled over the few account keys only, numbered densely among themselves (as
        # np.unique would, without sorting the pairs).
        key_of = at[sub[:, PAIR_KEY]]
        present = np.zeros(n_keys, bool)
        present[key_of] = True
        acct_keys = np.flatnonzero(present)
        group = (np.cumsum(present) - 1)[key_of]
        pooled = pooled_totals(totals, group, sub[:, PAIR_ACCOUNT], len(acct_keys))
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
        volume = self.volume[sids]
        redo = (
            (state.key_changed[code] > self.seen)
            | _IS_ACCOUNT_LINK[state.sid_link[sids]]
            | (ip_churn != self.churn[sids])
        )
        # A key's volume moves with the clock alone only while it is above 0: unchanged, its
        # rate only falls as its span grows (a key's accounts only grow, so it stays in
        # `sids` and its changes are seen). Computed for the others (nan: never computed).
        moves = np.flatnonzero(redo | (volume != 0.0))
        members = np.maximum(state.key_accounts[code[moves]], 1).astype(np.float64)
        now = _volume(_key_rate(state, code[moves], state.key_counts[code[moves], 0], members),
                      cfg)
        redo[moves] |= now != volume[moves]  # also true where never computed (nan)
        volume[moves] = now
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
    out: np.ndarray = (pooled_harvest * (1.0 - np.exp(-size / CAMPAIGN_SIZE_SCALE))
                       * np.minimum(1.0, CAMPAIGN_KINDS_BASE + CAMPAIGN_PER_KIND * families))
    return out
