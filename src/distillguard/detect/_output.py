"""Turn an assessment into the format's `verdicts` and `campaigns` tables, with evidence.

Every reason is a sentence with its numbers, so that an analyst can check it against the log;
`evidence` (an added JSON column) carries the same facts structured for the console.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from distillguard.detect._config import DetectConfig
from distillguard.detect._core import Assessment
from distillguard.detect._decision import ACTION_NAMES, MONITOR
from distillguard.detect._evidence import cohort_reason
from distillguard.detect._rarity import rarity_reason
from distillguard.detect._state import (
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_CODE,
    PAIR_KIND,
    TEMPLATE_KINDS,
    DetectorState,
)
from distillguard.traffic import CAMPAIGNS, VERDICTS

_KIND_WORDS = {
    "ip": "address",
    "head0": "prompt template",
    "head1": "prompt template",
    "tail0": "prompt template",
    "tail1": "prompt template",
    "sys": "system prompt",
    "payment": "payment fingerprint",
    "email": "e-mail domain",
    "created": "sign-up burst",
    "cohort": "task-pool fingerprint (cohort, no infrastructure)",
}


#: Accounts allowed with a harvest profile under this get no reasons (nothing to explain).
VERDICT_REASONS_HARVEST = 0.3


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def profile_reasons(f: dict[str, np.ndarray], h: float, i: int) -> list[str]:
    """The harvest profile of account `i` in words, strongest facts only."""
    parts = [f"{f['rate_per_day'][i]:.0f} requests/day over {int(f['events'][i])} requests"]
    notable: list[tuple[str, str]] = [
        ("single_turn", f"{_pct(f['single_turn'][i])} single-turn"),
        ("elicitation", f"{_pct(f['elicitation'][i])} ask for step-by-step reasoning, grading or training data"),
        ("focus", f"{_pct(f['focus'][i])} coding, maths or tool use"),
        ("template", f"{_pct(f['template'][i])} on one repeated template"),
        ("sdk", f"{_pct(f['sdk'][i])} from an SDK client"),
        ("capped", f"{_pct(f['capped'][i])} stopped at max_tokens"),
    ]
    for name, text in notable:
        if f[name][i] >= 0.5:
            parts.append(text)
    if f["night"][i] >= 0.5:
        parts.append(f"{_pct(f['night_share'][i])} during the account's local night")
    if f["release"][i] >= 0.5:
        parts.append("moved onto a model within 48 h of its release")
    out = [f"harvest profile {h:.2f}: " + ", ".join(parts)]
    meta = []
    if f["new_account"][i] >= 1:
        meta.append("opened less than 14 days before its first request")
    if f["risky_channel"][i] >= 1:
        meta.append("signed up through an education/research/startup channel")
    if f["unverified"][i] >= 1:
        meta.append("unverified")
    if meta:
        out.append("account " + ", ".join(meta))
    return out


# Per link kind (index in LINK_KINDS): the word its reasons use, numbered.
_WORDS = tuple(dict.fromkeys(_KIND_WORDS[k] for k in LINK_KINDS))
_WORD_OF_LINK = np.array([_WORDS.index(_KIND_WORDS[k]) for k in LINK_KINDS])


def _diverse(kind: np.ndarray, code: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Up to `limit` of an account's keys (link kind, code; in the order given), the first of
    each kind of link first, so the reasons show every link."""
    if not len(kind):
        return []
    _, firsts = np.unique(_WORD_OF_LINK[kind], return_index=True)
    firsts.sort()
    rest = np.ones(len(kind), bool)
    for j in firsts.tolist():
        rest &= (kind != kind[j]) | (code != code[j])
    picked = np.concatenate([firsts, np.flatnonzero(rest)[: max(limit - len(firsts), 0)]])
    picked = picked[:limit]
    return list(zip(kind[picked].tolist(), code[picked].tolist(), strict=True))


def _campaign_names(a: Assessment) -> dict[int, str]:
    """Stable, score-ranked campaign ids: C001 is the riskiest."""
    comps = np.array(sorted(a.component_size), np.int64)
    if not len(comps):
        return {}
    # Each campaign's highest score among its accounts (one pass, not one per campaign).
    inside = a.component >= 0
    top = np.full(int(max(comps.max(), a.component.max())) + 1, -np.inf)
    np.maximum.at(top, a.component[inside], a.campaign_score[inside])
    ranked = sorted(zip((-top[comps]).tolist(), comps.tolist(), strict=True))
    return {c: f"C{n + 1:03d}" for n, (_, c) in enumerate(ranked)}


def _key_label(state: DetectorState, kind: str, code: int,
               example: Callable[[str], str] | None) -> str:
    label = state.key_label[code]
    if kind in TEMPLATE_KINDS:
        text = example(label) if example is not None else ""
        return f"'{text[:120]}'" if text else f"(first seen in event {label})"
    return label


def carried_campaigns(a: Assessment) -> np.ndarray:
    """Per account: the campaign whose traffic it carries (`_carriers`, `_cells`), else -1."""
    peer = a.carriers.peer
    out = np.full(len(a.component), -1, np.int64)
    has = peer >= 0
    out[has] = a.component[peer[has]]
    cell = a.cells.carries[: len(out)]
    out[: len(cell)][cell >= 0] = a.cell_campaign[cell[cell >= 0]]
    # Carriers of a flagged account's carried key: that account's campaign (or cell).
    peer = a.cells.carries_peer[: len(out)]
    at = np.flatnonzero(peer >= 0)
    via = a.component[peer[at]]
    out[at] = np.where(out[at] >= 0, out[at], via)
    return out


def _cell_reasons(state: DetectorState, a: Assessment, i: int, names: dict[int, str],
                  example: Callable[[str], str] | None) -> tuple[list[str], dict[str, object]]:
    """Why account `i` is in a small campaign tied by one template, or carries one."""
    c = a.cells
    cell = int(c.member[i]) if i < len(c.member) else -1
    carried = int(c.carries[i]) if i < len(c.carries) else -1
    k = cell if cell >= 0 else carried
    peer = int(c.carries_peer[i]) if i < len(c.carries_peer) and k < 0 else -1
    if peer >= 0:
        return _peer_reasons(state, a, i, peer, names, example)
    if k < 0:
        return [], {}
    sid = int(c.key[k]) if cell >= 0 else int(c.carrier_key[i])
    key_h = float(c.key_profile[sid])
    code = int(state.sid_code[sid])
    kind = LINK_KINDS[int(state.sid_link[sid])]
    label = _key_label(state, kind, code, example)
    name = names[int(a.cell_campaign[k])]
    n_req, n_acc = int(state.key_counts[code, 0]), int(state.key_accounts[code])
    template = (f"{_KIND_WORDS[kind]} {label}, whose own traffic looks like harvesting "
                f"(profile {key_h:.2f} over {n_req} requests from {n_acc} accounts)")
    ev: dict[str, object] = {"campaign": name, "kind": kind, "value": label,
                             "key_harvest": round(key_h, 4),
                             "key_requests": n_req, "key_accounts": n_acc}
    if cell >= 0 and c.solo[k]:
        n_by = int((c.carries == k).sum())
        share = _pct(c.carried_by[k]) if k < len(c.carried_by) else "most"
        by_whom = (f"{share} of them from {'one other account' if n_by <= 1 else f'{n_by} other accounts'}"
                   f", for which they are a small part of {'its' if n_by <= 1 else 'their'} own "
                   "traffic")
        who = ("the one direct account" if c.size[k] <= 1
               else f"one of the {c.size[k]} direct accounts")
        text = f"{who} of small campaign {name}: sends {template}, {by_whom}"
        ev["solo"] = True
        ev["carried_share"] = round(float(c.carried_by[k]), 4) if k < len(c.carried_by) else None
        return [text], {"cell": ev}
    if cell >= 0:
        ties = ", ".join(_KIND_WORDS[t] for t in c.ties[k])
        text = (f"member of small campaign {name}: {c.size[k]} harvest-like accounts that send "
                f"{template} and also share {ties}")
        ev["ties"] = c.ties[k]
        return [text], {"cell": ev}
    text = (f"carries the traffic of small campaign {name}: sends {c.carried_events[i]} of the "
            f"{n_req} requests ({_pct(c.carried_share[i])}) on its {template}; "
            "throttled rather than blocked, since its other traffic may be its customers' own")
    ev.update(requests=int(c.carried_events[i]), share=round(float(c.carried_share[i]), 4))
    return [text], {"carries_cell": ev}


def _peer_reasons(state: DetectorState, a: Assessment, i: int, peer: int,
                  names: dict[int, str], example: Callable[[str], str] | None,
                  ) -> tuple[list[str], dict[str, object]]:
    """Why account `i` carries the carried key of `peer`, an account already flagged."""
    c = a.cells
    sid = int(c.carrier_key[i])
    key_h = float(c.key_profile[sid]) if sid < len(c.key_profile) else float("nan")
    code = int(state.sid_code[sid])
    kind = LINK_KINDS[int(state.sid_link[sid])]
    label = _key_label(state, kind, code, example)
    n_req, n_acc = int(state.key_counts[code, 0]), int(state.key_accounts[code])
    cid = int(a.component[peer]) if peer < len(a.component) else -1
    whose = (f"campaign {names[cid]}" if cid in names
             else f"flagged account {state.ids[peer]}")
    text = (f"carries the traffic of {whose}: sends {c.carried_events[i]} of the {n_req} "
            f"requests ({_pct(c.carried_share[i])}) on {_KIND_WORDS[kind]} {label}, whose own "
            f"traffic looks like harvesting (profile {key_h:.2f} over {n_req} requests from "
            f"{n_acc} accounts) and whose other requests come from its flagged account "
            f"{state.ids[peer]}; throttled rather than blocked, since its other traffic may be "
            "its customers' own")
    ev: dict[str, object] = {"campaign": names.get(cid), "peer": state.ids[peer], "kind": kind,
                             "value": label, "key_harvest": round(key_h, 4),
                             "key_requests": n_req, "key_accounts": n_acc,
                             "requests": int(c.carried_events[i]),
                             "share": round(float(c.carried_share[i]), 4)}
    return [text], {"carries_cell": ev}


def evidence_weights(a: Assessment, i: int) -> tuple[str | None, dict[str, object]]:
    """The evidence modules that counted for account `i`, with their weights, in words and
    structured (None and {} when none fired).

    Links and corroborations add weights (the account joins a campaign at the bar it
    needs); small campaigns and carriers throttle by themselves.
    """
    j = a.join
    if j is None or i >= len(j.weight):
        return None, {}
    parts: list[str] = []
    weights: dict[str, float] = {}
    throttles: list[str] = []
    for name, t in a.evidence.items():
        if "pairs" in t.columns and t["pairs"][i] > 0:
            n = int(t["pairs"][i])
            parts.append(f"{name} {t['weight'][i]:.1f} ({n} pairs on suspicious keys)")
            weights[name] = round(float(t["weight"][i]), 4)
        elif "fires" in t.columns and t["fires"][i]:
            parts.append(f"{name} {t['weight'][i]:.1f}")
            weights[name] = round(float(t["weight"][i]), 4)
        elif "cell" in t.columns and t["cell"][i] >= 0:
            throttles.append(f"{name}: member of a small campaign scored {t['score'][i]:.2f}")
        elif "carries" in t.columns and t["carries"][i]:
            throttles.append(f"{name}: carries a campaign's traffic")
    if not parts and not throttles:
        return None, {}
    out: dict[str, object] = {}
    text = []
    if parts:
        total, need = float(j.weight[i]), float(j.need[i])
        verdict = "joins a campaign" if j.joined[i] else "not enough to join a campaign"
        thin = a.evidence.get("thin")
        held = thin is not None and "held" in thin.columns and bool(thin["held"][i])
        why = (" (too few requests for a profile, but linked into keys a flagged campaign holds)"
               if held else "")
        text.append(f"evidence weighed: {', '.join(parts)}; total {total:.1f} (links, plus the "
                    f"strongest corroboration once linked), {need:.1f} needed{why}: {verdict}")
        out = {"weights": weights, "total": round(total, 4), "needed": round(need, 4),
               "joined": bool(j.joined[i])}
        if held:
            out["held_keys"] = True
    if throttles:
        text.append(f"evidence that throttles on its own: {'; '.join(throttles)}")
        out["throttles"] = throttles
    return "; ".join(text), out


class VerdictColumns:
    """The verdicts table's cheap columns, per account in the state's order, with what the
    reasons of any account need (`reasons`): a step compares these for every account and
    builds reasons only for the few that changed.

    `ids` are the account ids, `action` holds codes (ACTION_NAMES), `score` the score as the
    table rounds it, `campaign` the campaign id or None (an object array).
    """

    def __init__(self, state: DetectorState, a: Assessment, cfg: DetectConfig,
                 example: Callable[[str], str] | None = None) -> None:
        m = state.size
        self.state, self.a, self.cfg, self.example = state, a, cfg, example
        self.names = _campaign_names(a)
        self.carried_campaign = carried_campaigns(a)
        campaign_of = np.where(a.component >= 0, a.component, self.carried_campaign)
        self.ids = state.ids
        self.action = a.action[:m]
        self.score = np.round(a.score[:m], 6)
        self.campaign = _names_of(campaign_of[:m], self.names)
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        #: per account, whether its flag applies to its flagged end users only (`mark`); None
        #: where end users are not judged apart
        self.apart: np.ndarray | None = None
        self._note = ""

    def _suspicious_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The suspicious pairs grouped by account (in their order within each account): kind,
        code, and where each account's run starts."""
        if self._pairs is None:
            sp = self.a.suspicious_pairs
            sp = sp[np.argsort(sp[:, PAIR_ACCOUNT], kind="stable")]
            starts = np.searchsorted(sp[:, PAIR_ACCOUNT], np.arange(self.state.size + 1))
            self._pairs = (sp[:, PAIR_KIND], sp[:, PAIR_CODE], starts)
        return self._pairs

    def explained(self) -> np.ndarray:
        """Per account: whether it gets reasons (allowed accounts with a low harvest profile
        have nothing to explain)."""
        m = self.state.size
        out: np.ndarray = ~((self.a.action[:m] < MONITOR) & (self.a.harvest[:m] < VERDICT_REASONS_HARVEST))
        return out

    def mark(self, flags: np.ndarray, note: str) -> None:
        """Set `apart` (per account, bool): the flagged accounts' reasons end with `note`."""
        self.apart = flags
        self._note = note

    def reasons(self, rows: np.ndarray) -> tuple[list[str], list[str]]:
        """The `reasons` and `evidence` (JSON text) of the accounts at `rows`."""
        explained = self.explained()
        # the features of these rows as Python floats, gathered once
        features = {k: v[rows].tolist() for k, v in self.a.features.items()}
        reasons, evidence = [], []
        for j, i in enumerate(rows.tolist()):
            rs, ev = self._account_reasons(i, {k: v[j] for k, v in features.items()}) if explained[i] else ([], None)
            if self.apart is not None and self.apart[i]:
                rs.append(self._note)
            reasons.append(json.dumps(rs))
            evidence.append("{}" if ev is None else json.dumps(ev))
        return reasons, evidence

    def _account_reasons(self, i: int, features: dict[str, float]) -> tuple[list[str], dict[str, object]]:
        state, a, names, example = self.state, self.a, self.names, self.example
        rs = profile_reasons(a.features, float(a.harvest[i]), i)
        ev: dict[str, object] = {
            "harvest": round(float(a.harvest[i]), 4),
            "features": {k: round(v, 4) for k, v in features.items()},
        }
        if state.partner[i]:
            rs.append("matches indicators that partners shared (STIX import)")
        cell_rs, cell_ev = _cell_reasons(state, a, i, names, example)
        cid = int(a.component[i])
        if cid >= 0 and "cell" not in cell_ev:
            kinds = ", ".join(sorted({_KIND_WORDS[k] for k in a.component_kinds[cid]}))
            rs.append(
                f"member of campaign {names[cid]}: {a.component_size[cid]} accounts linked by "
                f"shared {kinds} (campaign score {a.campaign_score[i]:.2f})"
            )
            shared = []
            sp_kind, sp_code, sp_from = self._suspicious_pairs()
            lo, hi = int(sp_from[i]), int(sp_from[i + 1])
            for kind_i, code in _diverse(sp_kind[lo:hi], sp_code[lo:hi], 6):
                kind = LINK_KINDS[kind_i]
                n_acc = int(state.key_accounts[code])
                label = _key_label(state, kind, code, example)
                rs.append(f"shares {_KIND_WORDS[kind]} {label} with {n_acc - 1} other accounts")
                shared.append({"kind": kind, "value": label, "accounts": n_acc})
            ev["campaign"] = names[cid]
            ev["shared"] = shared
        sync = a.evidence.get("sync")
        sk = int(sync["key"][i]) if sync is not None and i < len(sync) else -1
        if sync is not None and sk >= 0:
            code = int(state.sid_code[sk])
            kind = LINK_KINDS[int(state.sid_link[sk])]
            label = _key_label(state, kind, code, example)
            n_acc = int(sync["accounts"][i])
            r_utc, r_loc = float(sync["r_utc"][i]), float(sync["r_local"][i])
            rs.append(
                f"keeps one clock with the {n_acc} accounts of {_KIND_WORDS[kind]} {label}: "
                f"their hours line up in UTC (resultant {r_utc:.2f}) but not in the local "
                f"time of the countries they declare ({r_loc:.2f})"
            )
            ev["sync"] = {"kind": kind, "value": label, "accounts": n_acc,
                          "r_utc": round(r_utc, 4), "r_local": round(r_loc, 4)}
        rs.extend(cell_rs)
        ev.update(cell_ev)
        carried = self.carried_campaign[i]
        if carried >= 0 and not cell_ev:
            c = a.carriers
            rs.append(
                f"carries the traffic of campaign {names[carried]}: sends {c.templates[i]} of its "
                f"template keys, {_pct(c.coverage[i])} of what a typical member sends "
                f"({c.members[i]} members overlap); throttled rather than blocked, since its "
                "other traffic may be its customers' own"
            )
            ev["carries"] = {"campaign": names[carried], "templates": int(c.templates[i]),
                             "coverage": round(float(c.coverage[i]), 4),
                             "members": int(c.members[i])}
        if i < len(a.rarity.flag) and a.rarity.flag[i]:
            text, entry = rarity_reason(a.rarity, i)
            rs.append(text)
            ev["rarity"] = entry
        cohort = a.evidence.get("cohort")
        if cohort is not None and i < len(cohort) and cohort["cell"][i] >= 0:
            text, entry = cohort_reason(cohort, i)
            rs.append(text)
            ev["cohort"] = entry
        weighed, weighed_ev = evidence_weights(a, i)
        if weighed is not None:
            rs.append(weighed)
            ev["evidence"] = weighed_ev
        return rs, ev


def _names_of(campaign_of: np.ndarray, names: dict[int, str]) -> np.ndarray:
    """Per account: the name of campaign `campaign_of` (-1: None), as an object array."""
    lookup = np.full(max(names, default=-1) + 2, None, object)
    for cid, name in names.items():
        lookup[cid + 1] = name
    inside = (campaign_of >= -1) & (campaign_of < len(lookup) - 1)
    out = np.full(len(campaign_of), None, object)
    out[inside] = lookup[campaign_of[inside] + 1]
    return out


def verdict_table(
    state: DetectorState,
    a: Assessment,
    cfg: DetectConfig,
    first_flagged_us: np.ndarray | None,
    example: Callable[[str], str] | None = None,
) -> pa.Table:
    """One row per account seen, in the VERDICTS schema plus `evidence`."""
    m = state.size
    cols = VerdictColumns(state, a, cfg, example)
    reasons = ["[]"] * m
    evidence = ["{}"] * m
    explained = np.flatnonzero(cols.explained())
    for i, r, e in zip(explained.tolist(), *cols.reasons(explained), strict=True):
        reasons[i] = r
        evidence[i] = e
    flagged = first_flagged_us if first_flagged_us is not None else np.full(m, -1, np.int64)
    ts = [
        datetime.fromtimestamp(int(x) / 1e6, tz=UTC) if x >= 0 else None for x in flagged[:m]
    ]
    table = pa.table(
        {
            "account_id": pa.array(state.ids, pa.string()),
            "score": pa.array(cols.score, pa.float64()),
            "action": pa.array([ACTION_NAMES[int(x)] for x in cols.action], pa.string()),
            "campaign_id": pa.array(cols.campaign.tolist(), pa.string()),
            "first_flagged_ts": pa.array(ts, VERDICTS.schema.field("first_flagged_ts").type),
            "reasons": pa.array(reasons, pa.string()),
            "evidence": pa.array(evidence, pa.string()),
        }
    )
    return table


def campaign_table(state: DetectorState, a: Assessment, verdicts: pa.Table) -> pa.Table:
    """One row per campaign, from the verdicts already built."""
    names = _campaign_names(a)
    carried = carried_campaigns(a)
    events = state.counters["n"][: state.size]
    flagged = verdicts.column("first_flagged_ts").to_pylist()
    rows: dict[str, list[object]] = {c: [] for c in CAMPAIGNS.schema.names}
    rows["evidence"] = []
    for cid, name in sorted(names.items(), key=lambda kv: kv[1]):
        idx = np.flatnonzero(a.component == cid)
        times = [flagged[i] for i in idx if flagged[i] is not None]
        kinds = sorted({_KIND_WORDS[k] for k in a.component_kinds[cid]})
        h = a.harvest[idx]
        rows["campaign_id"].append(name)
        rows["accounts"].append(len(idx))
        rows["events"].append(int(events[idx].sum()))
        rows["score"].append(round(float(a.campaign_score[idx].max()), 6))
        rows["first_flagged_ts"].append(min(times) if times else None)
        rows["reasons"].append(
            json.dumps(
                [
                    f"{len(idx)} account{'s' if len(idx) != 1 else ''} linked by shared "
                    f"{', '.join(kinds)}",
                    f"mean harvest profile {h.mean():.2f} (min {h.min():.2f}, max {h.max():.2f})",
                    f"{int(events[idx].sum())} requests served to its accounts",
                    *([f"{n_carriers} other account{'s carry' if n_carriers > 1 else ' carries'}"
                       " its traffic (throttled)"]
                      if (n_carriers := int((carried == cid).sum())) else []),
                ]
            )
        )
        rows["evidence"].append(
            json.dumps({"link_kinds": a.component_kinds[cid], "mean_harvest": float(h.mean())})
        )
    schema = CAMPAIGNS.schema.append(pa.field("evidence", pa.string()))
    return pa.table(rows, schema=schema)
