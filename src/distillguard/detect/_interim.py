"""Interim flags: a flagged cohort's new member throttled at the request that makes it one.

Decisions are taken at window ends (`[replay] cadence_minutes`), and an account that sends a
burst of requests is served the whole burst before the next decision sees it, though the
cohort it joins was flagged long before. Between two decisions the cohorts of the last one
are known (their strata, task pools and frames, `_cohort`); what is new is the account's own
requests. So an account's first `evidence.cohort.min_events` requests (the ones its membership
is decided on) are kept, and after each of them the account is judged against the last
decision's cohorts as the cohort test judges a newcomer: the fingerprint's shares over its
requests so far, its task stratum a cohort's and its tasks in that cohort's pool (topic
similarity), or, from `early_min_events` requests on, its requests on one of the cohorts' own
frames (`on_frames`). One that passes is throttled `interim_react_seconds` after that request
instead of at the next decision. Nothing else is looked at: an account that no cohort of the
last decision would take waits for the next decision as before.

The check is one-sided: the group-level parts (which strata are cohorts, their pools and
frames, which words are rare) are the last decision's, the account's own shares are its
requests' so far. The replay records an interim flag as the account's first flag when the
decision at the window's end flags the account too; one that decision does not confirm
would have throttled the account until then, and is reported apart (scan table
`interim_flags`, `confirmed` false).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from distillguard.detect._cohort import (
    STRATA,
    AccountShape,
    Cohorts,
    EdgeShape,
    Frames,
    cohort_frames,
    fingerprinted,
    strata,
)
from distillguard.detect._config import CohortConfig, DetectConfig
from distillguard.detect._decision import THROTTLE
from distillguard.detect._items import TOPIC_BITS
from distillguard.detect._state import (
    ALL_KINDS,
    COUNTERS,
    EDGE_KINDS,
    TEMPLATE_KINDS,
    DetectorState,
)

if TYPE_CHECKING:
    from distillguard.detect._online import OnlineDetector

#: The hashed keys kept per request: the template kinds (a frame of a dozen words) and the
#: edge kinds (a frame of a word or two).
KEY_KINDS = (*TEMPLATE_KINDS, *EDGE_KINDS)
_NO_KEY = np.uint64(np.iinfo(np.uint64).max)
#: A young account more of whose items than this share another account sent first runs a
#: public benchmark (its items are everyone's); an operator's accounts send slices of their
#: own, which a few public items of a mixed pool do not make public.
PUBLIC_ITEM_SHARE = 0.5


def young_rows(state: DetectorState, sig: pl.DataFrame, acct: np.ndarray, w: np.ndarray,
               seen: np.ndarray, keep: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of a time-ordered batch of signals (prepared: its keys coded in `state`)
    that are among their account's first `keep` requests, sorted by window: w, acct, idx (the
    request's place in its account's traffic), ts and the per-request flags and keys (template
    keys by hash, edge keys by code); and `seen` (requests per account code before the batch)
    counted on to after it."""
    m = int(acct.max()) + 1 if len(acct) else 0
    if len(seen) < m:
        seen = np.concatenate([seen, np.zeros(m - len(seen), np.int64)])
    before = seen[acct] if len(acct) else np.zeros(0, np.int64)
    seen = seen + np.bincount(acct, minlength=len(seen))
    at = np.flatnonzero(before < keep)
    a = acct[at]
    # The request's place within its account in the batch (time order is kept: stable sort).
    order = np.argsort(a, kind="stable")
    sa = a[order]
    start = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]]) if len(sa) else np.zeros(0, np.int64)
    within = np.arange(len(sa)) - np.repeat(start, np.diff(np.r_[start, len(sa)]))
    idx = np.empty(len(a), np.int64)
    idx[order] = within
    idx += before[at]
    take = at[idx < keep]
    idx = idx[idx < keep]
    rows = sig[take]
    out: dict[str, np.ndarray] = {
        "w": w[take], "acct": acct[take], "idx": idx, "ts": rows["ts_us"].to_numpy(),
        "single": (rows["turns"] <= 1).to_numpy(),
        "distill": rows["distill"].cast(pl.Int64).to_numpy(),
        "math": rows["math"].cast(pl.Boolean).to_numpy(),
        "coding": rows["code"].cast(pl.Boolean).to_numpy(),
        "tool": (rows["tools"] > 0).to_numpy(),
        "topic": (rows["topic"].to_numpy() if "topic" in rows.columns
                  else np.zeros(len(take), np.uint32)),
        "has_item": (rows["item"].is_not_null().to_numpy() if "item" in rows.columns
                     else np.zeros(len(take), bool)),
    }
    # An item another account sent first is public (a benchmark's): an operator's accounts
    # each send their own slice of its pool.
    if "item" in rows.columns:
        item = rows["item"].cast(pl.UInt64)
        first = state.items.first_senders(item.fill_null(0).to_numpy())
        out["public"] = item.is_not_null().to_numpy() & (first >= 0) & (first != out["acct"])
    else:
        out["public"] = np.zeros(len(take), bool)
    for kind in KEY_KINDS:
        col = (rows[kind].cast(pl.UInt64) if kind in rows.columns
               else pl.Series([None] * len(take), dtype=pl.UInt64))
        out[kind] = col.fill_null(_NO_KEY).to_numpy()
    for kind in EDGE_KINDS:
        # Edge keys as the detector's codes (their traffic says whether they are rare).
        h = out[kind]
        code = state.key_codes(ALL_KINDS.index(kind), h).astype(np.int64)
        out[kind] = np.where((h != _NO_KEY) & (code >= 0), code.astype(np.uint64), _NO_KEY)
    order = np.argsort(out["w"], kind="stable")
    return {k: v[order] for k, v in out.items()}, seen


def top_counts(values: np.ndarray, upto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `values` (rows, slots; `_NO_KEY`: none): among its first `upto` + 1 slots,
    the count of its most used value and that value's slot (the first used, among equals)."""
    k = values.shape[1]
    live = (np.arange(k)[None, :] <= upto[:, None]) & (values != _NO_KEY)
    same = (values[:, :, None] == values[:, None, :]) & live[:, :, None] & live[:, None, :]
    counts = same.sum(axis=2)
    best = np.argmax(counts, axis=1)
    return counts[np.arange(len(values)), best], best


@dataclass
class _Look:
    """What the last decision says a newcomer is judged against."""

    at: np.ndarray  # per stratum: its cohort (-1: none)
    frames: Frames  # the cohorts' own frames (`cohort_frames`)
    centre: np.ndarray  # the tested accounts' mean topic direction
    pools: np.ndarray  # per cohort: the sum of its members' centred topic directions
    one_pool: np.ndarray  # per cohort: its members are held to its pool (`_cohort.pooled`)


@dataclass
class InterimFlags:
    """Replay bookkeeping: the young accounts' first requests, the last decision's cohorts,
    and per account the interim flag time and whether the decision after it confirmed it."""

    cfg: CohortConfig
    react_us: int
    slots: dict[str, np.ndarray] = field(default_factory=dict)  # per account code, per request
    flagged_us: dict[int, int] = field(default_factory=dict)
    confirmed: dict[int, bool] = field(default_factory=dict)
    _seen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # prepare side
    _look: _Look | None = None
    _basis: tuple[Cohorts, np.ndarray] | None = None  # the last decision's cohorts, judged accounts
    _pending: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: DetectConfig) -> InterimFlags | None:
        """The replay's interim flags under `cfg` (None: cohorts or interim flags off)."""
        co = cfg.evidence.cohort
        if not (co.enabled and co.interim):
            return None
        return cls(co, int(co.interim_react_seconds * 1_000_000))

    @property
    def keep(self) -> int:
        """The requests an account is judged after: its first ones, up to where the decision's
        public-items test starts (`public_min_items`), and at least `min_events`."""
        return max(self.cfg.min_events, self.cfg.public_min_items - 1)

    def prepare(self, state: DetectorState, sig: pl.DataFrame, step: int,
                origin: int) -> dict[str, np.ndarray]:
        """In the prepare thread, after `state.prepare` of the same batch: its young rows
        (`young_rows`)."""
        acct = state.account_codes(sig["account_id"])
        w = (sig["ts_us"].to_numpy() - origin) // step
        rows, self._seen = young_rows(state, sig, acct, w, self._seen, self.keep)
        return rows

    @staticmethod
    def window_rows(rows: dict[str, np.ndarray], w: int) -> dict[str, np.ndarray]:
        """The rows of window `w`."""
        lo, hi = np.searchsorted(rows["w"], [w, w + 1])
        return {k: v[lo:hi] for k, v in rows.items()}

    def _store(self, rows: dict[str, np.ndarray]) -> None:
        need = int(rows["acct"].max()) + 1
        have = len(next(iter(self.slots.values()))) if self.slots else 0
        if need > have:
            cap = max(need, 2 * have, 1024)
            for name, v in rows.items():
                if name in ("w", "acct", "idx"):
                    continue
                fill = _NO_KEY if name in KEY_KINDS else 0
                grown = np.full((cap, self.keep), fill, v.dtype)
                if name in self.slots:
                    grown[:have] = self.slots[name]
                self.slots[name] = grown
        for name, v in rows.items():
            if name not in ("w", "acct", "idx"):
                self.slots[name][rows["acct"], rows["idx"]] = v

    def decided(self, state: DetectorState, action: np.ndarray, cohorts: Cohorts | None,
                overridden: np.ndarray) -> None:
        """After a decision: who is judged in the next window (not flagged, not enterprise,
        no analyst's decision), against its cohorts (nothing when no cohort is flagged). What
        the cohorts give a newcomer (`_look`) is read from the state only once a row of the
        next window shows the fingerprint (the state does not change before that window)."""
        self._look, self._basis = None, None
        if cohorts is None or not len(cohorts.strata_flagged) or not state.size:
            return
        m = state.size
        judged = np.zeros(m, bool)
        judged[: min(m, len(action))] = action[:m] >= THROTTLE
        judged |= state.enterprise[:m] | overridden[:m]
        self._basis = (cohorts.grown(m), judged)

    def _looked(self, state: DetectorState) -> _Look:
        """What the last decision's cohorts give a newcomer (`decided`; computed once)."""
        if self._look is not None:
            return self._look
        assert self._basis is not None
        c, judged = self._basis
        m, cfg = len(judged), self.cfg
        at = np.full(len(STRATA), -1, np.int64)
        at[c.strata_flagged] = np.arange(len(c.strata_flagged))
        shape = AccountShape.of(state, cfg)
        frames = cohort_frames(EdgeShape.of(state, cfg), c.member_strata(m),
                               shape.tested | shape.early, cfg)
        # The pools: as `_cohort.pooled`, centred on the tested accounts' mean direction.
        members = c.cohort[:m] >= 0
        rows = np.flatnonzero(shape.tested | members)
        topic = state.items.topic[rows].astype(np.float64)
        unit = topic / np.maximum(np.linalg.norm(topic, axis=1), 1e-12)[:, None]
        tested = shape.tested[rows]
        centre = unit[tested].mean(axis=0) if tested.any() else np.zeros(TOPIC_BITS)
        centred = unit[members[rows]] - centre
        centred /= np.maximum(np.linalg.norm(centred, axis=1), 1e-12)[:, None]
        pools = np.zeros((len(c.strata_flagged), TOPIC_BITS))
        np.add.at(pools, c.cohort[:m][members], centred)
        # As `_cohort.pooled`: a cohort with more than max_pool_outliers of its stratum's
        # fingerprinted accounts outside its pool (members keep stay_slack) has no one pool
        # and keeps them all; a newcomer is not held to it either.
        inside = c.fingerprint[:m] & np.isin(c.stratum[:m], c.strata_flagged)
        slack = np.where(members, cfg.stay_slack, 0.0)
        near = c.pool[:m] >= cfg.min_pool_similarity - slack
        label = at[np.maximum(c.stratum[:m], 0)]
        n_in = np.bincount(label[inside], minlength=len(c.strata_flagged))
        n_out = np.bincount(label[inside & ~near], minlength=len(c.strata_flagged))
        one_pool = n_out <= cfg.max_pool_outliers * n_in
        self._look = _Look(at, frames, centre, pools, one_pool)
        return self._look

    def window(self, state: DetectorState, rows: dict[str, np.ndarray]) -> None:
        """Before a window's rows are applied: store them and judge each young account after
        each of its requests in the window against the last decision (`decided`)."""
        if not len(rows["acct"]):
            return
        self._store(rows)
        if self._basis is None:
            return
        judged = self._basis[1]
        acct, idx, ts = rows["acct"], rows["idx"], rows["ts"]
        open_ = ~judged[np.minimum(acct, len(judged) - 1)] | (acct >= len(judged))
        fresh = np.array([a not in self.flagged_us and a not in self._pending
                          for a in acct.tolist()], bool)
        sel = open_ & fresh
        if not sel.any():
            return
        acct, idx, ts = acct[sel], idx[sel], ts[sel]
        hit = self.members(state, acct, idx)
        for a, t in zip(acct[hit].tolist(), ts[hit].tolist(), strict=True):
            self._pending.setdefault(a, t + self.react_us)

    def _shapes(self, state: DetectorState, acct: np.ndarray,
                idx: np.ndarray) -> tuple[AccountShape, EdgeShape, np.ndarray, np.ndarray]:
        """Per (account, request) row: its account's shape over its requests up to this one,
        its edge words, whether the item tests leave it to this check, and its requests on
        its most used template key."""
        cfg = self.cfg
        s = self.slots
        upto = np.arange(self.keep)[None, :] <= idx[:, None]
        n = (idx + 1).astype(np.float64)

        def share(name: str) -> np.ndarray:
            out: np.ndarray = (s[name][acct] * upto).sum(axis=1) / n
            return out

        template = np.zeros(len(acct), np.int64)
        for kind in TEMPLATE_KINDS:
            template = np.maximum(template, top_counts(s[kind][acct], idx)[0])
        # An edge key is rare up to edge_max_share of the requests; one coded after the last
        # decision has no traffic counted yet (rare).
        rare_max = cfg.edge_max_share * state.events_seen
        counts = state.key_counts[:, COUNTERS.index("n")]
        tops, keys, rare = [], [], []
        for kind in EDGE_KINDS:
            top, slot = top_counts(s[kind][acct], idx)
            h = s[kind][acct, slot]
            code = np.where(h != _NO_KEY, h, 0).astype(np.int64)
            known = (h != _NO_KEY)
            counted = known & (code < len(counts))
            events = np.zeros(len(acct))
            events[counted] = counts[code[counted]]
            tops.append(np.where(known, top, 0))
            keys.append(np.where(known, code, -1))
            rare.append(known & (events <= rare_max))
        edges = EdgeShape(np.column_stack(tops), np.column_stack(keys), np.column_stack(rare))
        edge = np.where(edges.rare, edges.top, 0).max(axis=1)
        shape = AccountShape(
            events=n, single_share=share("single"),
            frame_share=np.maximum(template, edge) / n,
            distill=share("distill") / 100.0, maths=share("math"), code=share("coding"),
            tools=share("tool"), tested=n >= cfg.min_events,
            early=(n >= cfg.early_min_events) & (n < cfg.min_events))
        # From public_min_items requests on, the decision's public-items test applies: left
        # to it. A young account most of whose items another account sent first (a
        # benchmark's) is left to it too (the test needs more items than it has).
        public = (s["public"][acct] & upto).sum(axis=1)
        items = (s["has_item"][acct] & upto).sum(axis=1)
        own_items = (n < cfg.public_min_items) & (public <= PUBLIC_ITEM_SHARE * items)
        return shape, edges, own_items, template

    def members(self, state: DetectorState, acct: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Per (account, request) row: a member of a cohort of the last decision over its
        requests up to this one."""
        cfg = self.cfg
        shape, edges, own_items, template = self._shapes(state, acct, idx)
        fp: np.ndarray = fingerprinted(shape, cfg) & own_items
        early = fingerprinted(shape, cfg, among=shape.early) & own_items
        if not (fp.any() or early.any()):
            return fp
        look = self._looked(state)
        # A first or last word is the account's frame here only when it is one of the
        # cohorts' own: a word rare so far may be a harness's phrase, common by the window's
        # end once its burst is counted (the decision then reads no frame).
        # A frame holds only counting the account itself among the word's users, as a
        # non-member (as the decision counts a newcomer with early_min_events requests).
        frames = look.frames
        at = np.minimum(np.searchsorted(frames.key, edges.key), max(len(frames.key) - 1, 0))
        framed = np.zeros(edges.rare.shape, bool)
        if len(frames.key):
            users = frames.members[at] / np.maximum(frames.share[at], 1e-12)
            framed = (edges.rare & (frames.key[at] == edges.key)
                      & (frames.members[at] >= cfg.frame_min_share * (users + 1)))
        edge = np.where(framed, edges.top, 0).max(axis=1)
        shape = replace(shape, frame_share=np.maximum(template, edge) / shape.events)
        fp = fingerprinted(shape, cfg) & own_items
        early = fingerprinted(shape, cfg, among=shape.early) & own_items
        cohort = np.where(fp, look.at[np.maximum(strata(shape, cfg), 0)], -1)
        in_pool = cohort >= 0
        if in_pool.any():
            s = self.slots
            upto = np.arange(self.keep)[None, :] <= idx[:, None]
            bits = ((s["topic"][acct][:, :, None] >> np.arange(TOPIC_BITS, dtype=np.uint32))
                    & np.uint32(1)).astype(np.float64)
            signed = (2.0 * bits - 1.0) * (s["has_item"][acct] & upto)[:, :, None]
            topic = signed.sum(axis=1)
            unit = topic / np.maximum(np.linalg.norm(topic, axis=1), 1e-12)[:, None]
            centred = unit - look.centre
            centred /= np.maximum(np.linalg.norm(centred, axis=1), 1e-12)[:, None]
            pool = look.pools[np.maximum(cohort, 0)]
            sim = np.einsum("ij,ij->i", centred, pool) / np.maximum(np.linalg.norm(pool, axis=1), 1e-12)
            in_pool &= (sim >= cfg.min_pool_similarity) | ~look.one_pool[np.maximum(cohort, 0)]
        on = framed & (edges.top >= cfg.min_frame_share * shape.events[:, None])
        stratum = np.where(on, frames.stratum[at] if len(frames.key) else -1, -1).max(axis=1)
        on_frame = on.any(axis=1) & (look.at[np.maximum(stratum, 0)] >= 0)
        out: np.ndarray = in_pool | (fp & ~in_pool & on_frame) | (early & on_frame)
        return out

    def confirm(self, action: np.ndarray, first_flag: np.ndarray) -> None:
        """After the decision at the window's end: each interim flag of the window is the
        account's first flag when the decision flags it too; else it is transient."""
        for a, t in self._pending.items():
            ok = a < len(action) and action[a] >= THROTTLE
            self.flagged_us[a] = t
            self.confirmed[a] = bool(ok)
            if ok and (first_flag[a] < 0 or first_flag[a] > t):
                first_flag[a] = t
        self._pending.clear()


def interim_flags(det: OnlineDetector) -> tuple[Cohorts | None, np.ndarray]:
    """The detector's last cohorts (None: no cohort module) and, per account, whether an
    analyst decided it (an account with an override is left to the decision)."""
    from distillguard.detect._evidence import CohortEvidence

    cohorts = next((mod.last for mod in det.core.modules if isinstance(mod, CohortEvidence)), None)
    overridden = np.zeros(det.state.size, bool)
    for aid in det.overrides:
        i = det.state.index.get(aid)
        if i is not None:
            overridden[i] = True
    return cohorts, overridden


def interim_table(state: DetectorState, flags: InterimFlags) -> pa.Table:
    """The replay's interim flags (an added scan table): account_id, interim_ts (when the
    account was throttled, `interim_react_seconds` after the request that made it a member)
    and confirmed (the next decision flagged it too)."""
    accts = sorted(flags.flagged_us)
    return pa.table({
        "account_id": pa.array([state.ids[a] for a in accts], pa.string()),
        "interim_ts": pa.array([flags.flagged_us[a] for a in accts], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "confirmed": pa.array([flags.confirmed[a] for a in accts], pa.bool_()),
    })
