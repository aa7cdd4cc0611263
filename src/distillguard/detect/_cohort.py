"""Cohorts: many accounts that are each only mildly unusual, tested as one group.

A campaign that shares no infrastructure is tied only by what it asks. Each of its accounts
looks like a person who scripts an assistant: one frame of its own (the same opening or closing
words, a paraphrase nobody else uses) around single-turn, self-contained tasks that read like
a training-data pool (the content model's P(distill), `_content`). Per account that is not
rare enough: some people do exactly this, and a campaign of a thousand aged accounts is itself
a large part of any "established" population a per-account null is estimated from
(`_rarity`). What independent users do not do is show that *fingerprint* by the hundred while
asking for the same kind of task.

So the test is about a group. Per account (at least `min_events` requests, not enterprise):

* the **fingerprint**: single-turn share >= `min_single_share`, share of its requests on its
  most used prompt frame >= `min_frame_share`, mean P(distill) >= `min_distill`;
* its **task stratum**: the kind of task it mostly asks (maths, code, tool use, or general), from
  the per-request flags of `_signatures`.

The **frame** is what stays around the tasks: the account's most used template key (a MinHash
band over a dozen words at either end of the prompt, `_signatures`), or, for a frame of a word
or two that a dozen words of varying task drown, its most used first or last word where that
word is rare in the log (it opens or closes at most `edge_max_share` of all requests): a word
that opens a task pool's items ("Write a function ...") opens many people's prompts and is the
task's, not a frame; "Task:" or "... step by step." around every request of one account is a
frame. The frame share is the larger of the two (`frame_counts`).

Per stratum `s` with `n_s` accounts, `k_s` of them fingerprinted, the null says the fingerprint
does not depend on the task asked: each of the `n_s` accounts is fingerprinted with the rate
seen in the *other* strata, `p_s = (K - k_s + 1) / (N - n_s + 2)` (a cohort cannot raise the
rate it is tested against; a campaign spread over every stratum raises all of them, which makes
the test conservative, never anti-conservative). Cohorts are found one after the other, the
most significant first, and each one found leaves the null of the rest (a step-down test: a
second campaign in another stratum is not hidden by the first one's excess). The p-value is the binomial upper tail
`P(Bin(n_s, p_s) >= k_s)`, times the number of strata tested (Bonferroni). A stratum whose
p-value is at most `max_p` and that holds at least `min_accounts` fingerprinted accounts is a
cohort; its fingerprinted accounts are its members. A member keeps its stratum and needs each
share only within `stay_slack` of its threshold at the next looks (hysteresis: a throttle is
not lifted by the noise of a few requests).

Two tests on what each account asks (its items, `_items`) keep look-alikes out:

* **public items**: an account whose distinct items overlap some other account's by at least
  `public_min_overlap` of the larger item set, and by at least `public_min_items` items, sends
  what others send (a public benchmark run) and is not fingerprinted. An operator splits a
  pool into disjoint slices (it pays for each answer once), so its accounts overlap nobody
  by much: a slice inside a researcher's run of the same benchmark is a small share of the
  run (the overlap is two-sided).
* **the cohort's pool**: a fingerprinted account in a cohort's stratum is a member only when
  its tasks point where the other fingerprinted accounts' tasks point (topic similarity at
  least `min_pool_similarity`, `_items.pool_similarity`): a lone scripter with tasks of his own
  is in the stratum but not in the pool, nor in a pool shared by the other accounts outside
  it (as another campaign's accounts whose tasks fall in this stratum are); one still outside
  is a member of another cohort when its tasks are near that cohort's pool (`nearest_pools`:
  strata are coarse, code tasks full of arithmetic count as maths). The test applies
  to a cohort while at most `max_pool_outliers` of its fingerprinted accounts fall outside the
  pool; beyond that the stratum has no one pool (several campaigns, or prompts padded with
  noise) and it keeps them all, so an operator gains nothing by making its tasks look unlike
  each other.

The cohorts' own **frames** are a prior for new members (`cohort_frames`, `on_frames`): a rare
first or last word that at least `frame_min_members` members of the last look use most and
whose judged users (members, and accounts with `early_min_events` requests) are at least
`frame_min_share` members. An account on such a frame is a member from `early_min_events`
requests when it shows the fingerprint's shares (two asks in one frame are common among people,
not in a frame only the cohort uses), and a fingerprinted account outside every pool is one
too (the frame ties it closer than a topic sketch). Wrappers of each account's own give no
frame, and the test waits for `min_events` requests as before.

A group of 100 accounts that are each fingerprinted with a rate ten times the rate outside
gives p-values below 1e-50, while no single one of them is rarer than about one in a hundred.
Members are throttled, never blocked: nothing but what they ask ties them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import bdtrc

from distillguard.detect._cadence import Cadence
from distillguard.detect._config import CohortConfig
from distillguard.detect._items import best_overlap, pool_similarity
from distillguard.detect._state import COUNTERS, DetectorState

#: The task strata, in the order of `Cohorts.stratum` codes (-1: not tested).
STRATA = ("maths", "code", "tools", "general")
_MATHS, _CODE, _TOOLS, _GENERAL = range(len(STRATA))
#: An account's item overlap is measured again once its shared rows grew by this share.
REMEASURE_GROWTH = 0.1


@dataclass(frozen=True)
class AccountShape:
    """Per account (indexed like `state.ids`): what the fingerprint and the strata read."""

    events: np.ndarray
    single_share: np.ndarray
    frame_share: np.ndarray
    distill: np.ndarray  # mean P(distill) of its prompts
    maths: np.ndarray  # shares of requests flagged maths, code, tool use
    code: np.ndarray
    tools: np.ndarray
    tested: np.ndarray  # enough requests, not enterprise
    early: np.ndarray  # not tested yet, but at least `early_min_events` requests, not enterprise

    @classmethod
    def of(cls, state: DetectorState, cfg: CohortConfig) -> AccountShape:
        m = state.size
        c = state.counters
        n = c["n"][:m].astype(np.float64)
        per = np.maximum(n, 1.0)
        return cls(
            events=n,
            single_share=c["single"][:m] / per,
            frame_share=frame_counts(state, cfg.edge_max_share) / per,
            distill=c["distill"][:m] / per / 100.0,  # summed in whole percent
            maths=c["math"][:m] / per,
            code=c["coding"][:m] / per,
            tools=c["tool"][:m] / per,
            tested=(n >= cfg.min_events) & ~state.enterprise[:m],
            early=(n >= cfg.early_min_events) & (n < cfg.min_events) & ~state.enterprise[:m],
        )


def rare_edges(key_events: np.ndarray, events: int, max_share: float) -> np.ndarray:
    """Per edge key: it opens (or closes) at most `max_share` of the log's `events` requests."""
    out: np.ndarray = key_events <= max_share * events
    return out


def frame_counts(state: DetectorState, edge_max_share: float) -> np.ndarray:
    """Per account: requests on its frame, the larger of its most used template key's and its
    most used first or last word's where that word is rare (`rare_edges`)."""
    m = state.size
    top, key = state.edge_top[:m], state.edge_top_key[:m]
    known = key >= 0
    events = state.key_counts[np.maximum(key, 0), COUNTERS.index("n")]
    rare = known & rare_edges(events, state.events_seen, edge_max_share)
    edge = np.where(rare, top, 0).max(axis=1, initial=0)
    out: np.ndarray = np.maximum(state.template_max[:m], edge)
    return out


@dataclass(frozen=True)
class EdgeShape:
    """Per account (indexed like `state.ids`) and edge kind (`_state.EDGE_KINDS`: first word,
    last word): its most used word's requests, key code (-1: none) and whether it is rare
    (`rare_edges`)."""

    top: np.ndarray
    key: np.ndarray
    rare: np.ndarray

    @classmethod
    def of(cls, state: DetectorState, cfg: CohortConfig) -> EdgeShape:
        m = state.size
        top, key = state.edge_top[:m], state.edge_top_key[:m]
        events = state.key_counts[np.maximum(key, 0), COUNTERS.index("n")]
        rare = (key >= 0) & rare_edges(events, state.events_seen, cfg.edge_max_share)
        return cls(top, key, rare)


@dataclass(frozen=True)
class Frames:
    """The cohorts' own frames, sorted by key: rare first or last words that at least
    `frame_min_members` cohort members use most, and that at least `frame_min_share` of the
    judged accounts using them most are members (`cohort_frames`)."""

    key: np.ndarray  # edge key code
    stratum: np.ndarray  # the stratum of the cohort with most members on it
    members: np.ndarray  # the members that use it most
    share: np.ndarray  # members / accounts that use it most

    @classmethod
    def none(cls) -> Frames:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros(0))


def cohort_frames(edges: EdgeShape, member_stratum: np.ndarray, judged: np.ndarray,
                  cfg: CohortConfig) -> Frames:
    """The frames of the cohorts whose members are given (`member_stratum`: per account its
    cohort's stratum, -1 for no member), weighed against the `judged` accounts (those with
    enough requests to be read: `early_min_events`).

    A word is weighed by who else uses it: the share of the members and judged accounts whose
    most used first (or last) word it is that are members of a cohort (an account too new to
    be judged counts for neither side: a campaign's own newcomers would dilute it). A phrase people use too ("Solve",
    "step by step.") is most used by many accounts that are no members and is no frame; the
    words of an operator's script that several of its accounts share are used by nobody else.
    One script may serve several cohorts (strata are kinds of task, not operators): a frame
    is the cohorts', and belongs to the one with most members on it.
    """
    rare = edges.rare & ((member_stratum >= 0) | judged)[:, None]
    if not rare.any() or not (member_stratum >= 0).any():
        return Frames.none()
    acct = np.nonzero(rare)[0]
    keys = edges.key[rare]
    strata = member_stratum[acct]
    all_keys, at, all_count = np.unique(keys, return_inverse=True, return_counts=True)
    inside = strata >= 0
    members = np.bincount(at[inside], minlength=len(all_keys))
    # The stratum with most members on each key.
    per = np.zeros((len(all_keys), len(STRATA)), np.int64)
    np.add.at(per, (at[inside], strata[inside]), 1)
    share = members / all_count
    ok = (members >= cfg.frame_min_members) & (share >= cfg.frame_min_share)
    return Frames(all_keys[ok], per[ok].argmax(axis=1).astype(np.int64), members[ok], share[ok])


def frame_prior(edges: EdgeShape, events: np.ndarray, frames: Frames,
                min_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Per account: the stratum of the cohort whose frame at least `min_share` of its requests
    are on (-1: none), and that frame's member share (0: none)."""
    m = len(events)
    stratum = np.full(m, -1, np.int64)
    share = np.zeros(m)
    if not len(frames.key) or not m:
        return stratum, share
    pos = np.minimum(np.searchsorted(frames.key, edges.key), len(frames.key) - 1)
    on = (edges.rare & (frames.key[pos] == edges.key)
          & (edges.top >= min_share * np.maximum(events, 1.0)[:, None]))
    s = np.where(on, frames.share[pos], 0.0)
    best = np.argmax(s, axis=1)
    rows = np.arange(m)
    share = s[rows, best]
    hit = share > 0
    stratum[hit] = frames.stratum[pos[rows, best]][hit]
    return stratum, share


@dataclass(frozen=True)
class ItemShape:
    """Per account (indexed like `state.ids`): its items and topic sums, and the shared pairs
    (`_items.ItemBook`)."""

    items: np.ndarray  # distinct items sent
    topic: np.ndarray  # (accounts, TOPIC_BITS) topic sums
    shared: np.ndarray  # (item code, account, rank) rows of items two or more accounts sent
    shared_rows: np.ndarray  # per account: its rows in `shared`

    @classmethod
    def of(cls, state: DetectorState) -> ItemShape:
        m = state.size
        book = state.items
        return cls(items=book.items[:m], topic=book.topic[:m], shared=book.shared_pairs(),
                   shared_rows=book.shared_rows[:m])


@dataclass(frozen=True)
class Overlap:
    """Per account: its item overlap with its closest account (share of the larger item set,
    items in common) and its shared rows when that was measured (-1: never)."""

    share: np.ndarray
    count: np.ndarray
    rows: np.ndarray

    @classmethod
    def none(cls, m: int) -> Overlap:
        return cls(np.zeros(m), np.zeros(m, np.int64), np.full(m, -1, np.int64))

    def grown(self, m: int) -> Overlap:
        extra = max(0, m - len(self.share))
        return Overlap(np.concatenate([self.share, np.zeros(extra)]),
                       np.concatenate([self.count, np.zeros(extra, np.int64)]),
                       np.concatenate([self.rows, np.full(extra, -1, np.int64)]))


def public_items(items: ItemShape, who: np.ndarray, cfg: CohortConfig,
                 last: Overlap | None = None) -> tuple[np.ndarray, Overlap]:
    """Per account: whether it sends public items (its items overlap another account's by at
    least `public_min_overlap` of the larger item set and `public_min_items` items; looked at
    for the accounts of `who` with that many items), and the overlaps.

    An account's overlap is measured again only when its shared rows grew by
    `REMEASURE_GROWTH` since `last` (a share moves little with a few more items in common; a
    partner's later items lower it only through items they share, which add rows too).
    """
    m = len(items.items)
    was = (last or Overlap.none(m)).grown(m)
    look = who & (items.items >= cfg.public_min_items)
    grew = items.shared_rows >= np.maximum(was.rows * (1.0 + REMEASURE_GROWTH), was.rows + 1)
    idx = np.flatnonzero(look & grew)
    share, count = best_overlap(items.shared, items.items, idx, cfg.max_item_partners)
    now = Overlap(was.share.copy(), was.count.copy(), was.rows.copy())
    now.share[idx], now.count[idx], now.rows[idx] = share, count, items.shared_rows[idx]
    public = look & (now.share >= cfg.public_min_overlap) & (now.count >= cfg.public_min_items)
    return public, now


def fingerprinted(shape: AccountShape, cfg: CohortConfig,
                  slack: np.ndarray | float = 0.0, among: np.ndarray | None = None) -> np.ndarray:
    """Per account: among `among` (None: the tested accounts) and shows the scripted task-pool
    fingerprint, each share threshold lowered by `slack` (per account, or one for all)."""
    out: np.ndarray = (
        (shape.tested if among is None else among)
        & (shape.single_share >= cfg.min_single_share - slack)
        & (shape.frame_share >= cfg.min_frame_share - slack)
        & (shape.distill >= cfg.min_distill - slack)
    )
    return out


def strata(shape: AccountShape, cfg: CohortConfig, among: np.ndarray | None = None) -> np.ndarray:
    """Per account: its task stratum (index in `STRATA`): the largest of its maths, code and
    tool-use shares when that is at least `topic_min_share`, else general; -1 if not among
    `among` (None: the tested accounts)."""
    shares = np.column_stack([shape.maths, shape.code, shape.tools])
    top = np.argmax(shares, axis=1)
    out = np.where(shares[np.arange(len(top)), top] >= cfg.topic_min_share, top, _GENERAL)
    return np.where(shape.tested if among is None else among, out, -1).astype(np.int64)


def cohort_pvalues(k: np.ndarray, n: np.ndarray,
                   exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per stratum: the null rate (fingerprinted share of the other strata not in `exclude`,
    add-one smoothed) and the Bonferroni-corrected binomial upper tail `P(Bin(n, rate) >= k)`
    (1 where k = 0).

    Args:
        k: fingerprinted accounts per stratum.
        n: tested accounts per stratum.
        exclude: strata left out of every null (cohorts already found), or None.
    """
    k = np.asarray(k, np.int64)
    n = np.asarray(n, np.int64)
    keep = np.ones(len(k), bool) if exclude is None else ~exclude
    k_null = np.where(keep, k, 0)
    n_null = np.where(keep, n, 0)
    rate = (k_null.sum() - k_null + 1.0) / (n_null.sum() - n_null + 2.0)
    # bdtrc(j, n, p) = P(Bin(n, p) > j): scipy's binomial tail without the distribution object.
    tail = bdtrc(np.maximum(k - 1, 0), n, rate)
    p: np.ndarray = np.where(k > 0, np.minimum(1.0, tail * len(k)), 1.0)
    return rate, p


def step_down(k: np.ndarray, n: np.ndarray, max_p: float,
              min_accounts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cohorts found one after the other: each cohort found leaves the null of the rest, so
    that one campaign's stratum cannot hide another's (their excess would raise the rate the
    others are tested against). Returns (null rate, p-value, is a cohort) per stratum."""
    found = np.zeros(len(k), bool)
    while True:
        rate, p = cohort_pvalues(k, n, found)
        new = (p <= max_p) & (np.asarray(k) >= min_accounts) & ~found
        if not new.any():
            return rate, p, found
        found[np.flatnonzero(new)[np.argmin(p[new])]] = True


@dataclass(frozen=True)
class Cohorts:
    """One look: per stratum its counts and p-value; per account its stratum and cohort."""

    stratum: np.ndarray  # per account: index in STRATA (-1: not tested)
    fingerprint: np.ndarray  # per account: bool
    cohort: np.ndarray  # per account: index of its cohort in `strata_flagged` (-1: none)
    overlap: Overlap  # per account: item overlap with its closest account
    pool: np.ndarray  # per account: topic similarity with its stratum's fingerprinted accounts
    tested: np.ndarray  # per stratum: tested accounts
    marked: np.ndarray  # per stratum: fingerprinted accounts
    null_rate: np.ndarray  # per stratum: the rate it is tested against
    p_value: np.ndarray  # per stratum
    strata_flagged: np.ndarray  # the strata that are cohorts, in cohort order
    prior: np.ndarray  # per account: its frame's member share where that made it a member, else 0
    early: np.ndarray  # per account: a member before `min_events` requests (on a cohort's frame)

    @classmethod
    def none(cls, m: int = 0) -> Cohorts:
        s = len(STRATA)
        return cls(np.full(m, -1, np.int64), np.zeros(m, bool), np.full(m, -1, np.int64),
                   Overlap.none(m), np.zeros(m), np.zeros(s, np.int64), np.zeros(s, np.int64), np.zeros(s), np.ones(s),
                   np.zeros(0, np.int64), np.zeros(m), np.zeros(m, bool))

    def member_strata(self, m: int) -> np.ndarray:
        """Per account (of `m`): its cohort's stratum, -1 for no member."""
        was = self.grown(m)
        out: np.ndarray = np.where(was.cohort >= 0,
                                   self.strata_flagged[np.maximum(was.cohort, 0)]
                                   if len(self.strata_flagged) else -1, -1)
        return out

    def grown(self, m: int) -> Cohorts:
        """The same answer for `m` accounts (accounts seen since the last look: none)."""
        k = len(self.cohort)
        if k >= m:
            return self
        extra = m - k
        return Cohorts(np.concatenate([self.stratum, np.full(extra, -1, np.int64)]),
                       np.concatenate([self.fingerprint, np.zeros(extra, bool)]),
                       np.concatenate([self.cohort, np.full(extra, -1, np.int64)]),
                       self.overlap.grown(m),
                       np.concatenate([self.pool, np.zeros(extra)]),
                       self.tested, self.marked, self.null_rate, self.p_value,
                       self.strata_flagged, np.concatenate([self.prior, np.zeros(extra)]),
                       np.concatenate([self.early, np.zeros(extra, bool)]))

    def sizes(self) -> np.ndarray:
        """Per cohort: its members."""
        out: np.ndarray = self.marked[self.strata_flagged]
        return out


def find_cohorts(shape: AccountShape, cfg: CohortConfig, last: Cohorts | None = None,
                 items: ItemShape | None = None, edges: EdgeShape | None = None) -> Cohorts:
    """The cohort test on every stratum (see the module's docstring).

    `last` is the previous look: its members (but early ones) keep their stratum and need the
    fingerprint only within `stay_slack` of each threshold (the evidence to keep a throttle is less than the
    evidence to start one, so a member is not let go by the noise of a few requests).
    `items` (None: neither item test) takes public-item accounts out of the fingerprint and
    holds membership to the cohort's pool. `edges` (None: no prior) gives the accounts' first
    and last words, from which the cohorts of `last` give their frames (`on_frames`).
    """
    m = len(shape.events)
    if not m:
        return Cohorts.none(0)
    s = strata(shape, cfg)
    member = np.zeros(m, bool)
    if last is not None:
        was = last.grown(m)
        # An early member is judged afresh once tested: the hysteresis holds what a full
        # test decided, not what a frame decided on two requests.
        member = (was.cohort >= 0) & ~was.early & shape.tested
        s = np.where(member, was.stratum, s)
    slack = np.where(member, cfg.stay_slack, 0.0)
    fp = fingerprinted(shape, cfg, slack)
    overlap = Overlap.none(m)
    if items is not None:
        public, overlap = public_items(items, fp, cfg, None if last is None else last.overlap)
        fp &= ~public
    tested = s >= 0
    n = np.bincount(s[tested], minlength=len(STRATA))
    k = np.bincount(s[fp], minlength=len(STRATA))
    rate, p, cohorts = step_down(k, n, cfg.max_p, cfg.min_accounts)
    flagged = np.flatnonzero(cohorts)
    at = np.full(len(STRATA), -1, np.int64)
    at[flagged] = np.arange(len(flagged))
    cohort = np.where(fp, at[np.maximum(s, 0)], -1)
    pool = np.zeros(m)
    if items is not None:
        pool, in_pool = pooled(items, tested, cohort, s, cfg, slack)
        cohort, pool = nearest_pools(items, tested, cohort, in_pool, pool, cfg, slack)
    prior, early = np.zeros(m), np.zeros(m, bool)
    if edges is not None and last is not None and len(flagged):
        cohort, s, prior, early = on_frames(shape, edges, last, cfg, cohort, s, fp, at)
    return Cohorts(s, fp, cohort, overlap, pool, n, k, rate, p, flagged, prior, early)


def on_frames(shape: AccountShape, edges: EdgeShape, last: Cohorts, cfg: CohortConfig,
              cohort: np.ndarray, stratum: np.ndarray, fp: np.ndarray,
              at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Members by the cohorts' own frames (`cohort_frames`, of the members of `last`): an
    account whose requests are on one of a cohort's frames is a member of it when

    * it shows the fingerprint but is outside every pool (its task flags put it in another
      stratum, or its few tasks do not point where the pool's do): the frame ties it to the
      cohort more closely than a topic sketch does; or
    * it shows the fingerprint's shares over `early_min_events` requests, fewer than the
      `min_events` the test needs otherwise: two requests on one frame are weak evidence
      alone (people phrase two asks alike), but not on a frame that only the cohort's members
      use.

    Returns the cohort, stratum, frame prior (its frame's member share, for the reasons) and
    whether it is an early member, per account. `at` maps a stratum to this look's cohort.
    """
    frames = cohort_frames(edges, last.member_strata(len(cohort)), shape.tested | shape.early, cfg)
    own, share = frame_prior(edges, shape.events, frames, cfg.min_frame_share)
    c_prior = np.where(own >= 0, at[np.maximum(own, 0)], -1)
    stray = fp & (cohort < 0) & (c_prior >= 0)
    early = fingerprinted(shape, cfg, among=shape.early) & (c_prior >= 0)
    take = stray | early
    cohort = np.where(take, c_prior, cohort)
    # An early member keeps the stratum of its own tasks (where it is counted once tested), not
    # its frame's: one script's frame may serve several kinds of task.
    stratum = np.where(early, strata(shape, cfg, among=shape.early), stratum)
    return cohort, stratum, np.where(take, share, 0.0), early


def pooled(items: ItemShape, tested: np.ndarray, cohort: np.ndarray, stratum: np.ndarray,
           cfg: CohortConfig, slack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per account: its topic similarity with the other fingerprinted accounts of its cohort
    (centred on the tested accounts), and whether that is at least `min_pool_similarity`
    (less its `slack`): the cohort's members draw from one task pool."""
    inside = cohort >= 0
    if not inside.any():
        return np.zeros(len(cohort)), inside
    sim = pool_similarity(items.topic, tested, inside, stratum)
    near = sim >= cfg.min_pool_similarity - slack
    # Accounts outside the pool that share one of their own are another campaign's share of
    # the stratum (its tasks flagged like this stratum's), not strays: they stay. A lone
    # scripter has nobody to share his tasks with.
    apart = inside & ~near
    if apart.any():
        own = pool_similarity(items.topic, tested, apart, stratum)
        near |= apart & (own >= cfg.min_pool_similarity - slack)
    # A cohort with many accounts outside its pool has no one pool (several in one stratum,
    # or prompts padded so that their task line is noise): there the test says nothing and
    # keeps everyone, so that padding buys an operator nothing.
    n_in = np.bincount(cohort[inside])
    n_out = np.bincount(cohort[inside & ~near], minlength=len(n_in))
    applies = n_out <= cfg.max_pool_outliers * n_in
    return sim, inside & (near | ~applies[np.maximum(cohort, 0)])


def nearest_pools(items: ItemShape, tested: np.ndarray, cohort: np.ndarray, in_pool: np.ndarray,
                  pool: np.ndarray, cfg: CohortConfig,
                  slack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per account: its cohort (-1: none) and topic similarity once the fingerprinted accounts
    outside their own cohort's pool are compared with the other cohorts' pools.

    A stratum is a coarse label read from per-request flags (code tasks full of arithmetic
    count as maths), so a fingerprinted account may sit in one cohort's stratum while its
    tasks point where another cohort's members' tasks point: it is a member of the cohort
    whose pool it is nearest, when at least `min_pool_similarity` (less its `slack`) near. A
    lone scripter near no cohort's pool stays out.
    """
    out = np.where(in_pool, cohort, -1)
    stray = (cohort >= 0) & ~in_pool
    n_cohorts = int(cohort.max()) + 1 if len(cohort) else 0
    if not stray.any() or n_cohorts < 2:
        return out, pool
    best = np.full(len(cohort), -np.inf)
    for c in range(n_cohorts):
        members = out == c
        if not members.any():
            continue
        # Within one label the similarity is leave-one-out against the rest: the cohort's
        # members and the strays, which its members outnumber.
        group = members | (stray & (cohort != c))
        sim = pool_similarity(items.topic, tested, group, np.zeros(len(cohort), np.int64))
        better = stray & (cohort != c) & (sim > best)
        best[better] = sim[better]
        take = better & (sim >= cfg.min_pool_similarity - slack)
        out[take] = c
    pool = pool.copy()
    moved = stray & (out >= 0)
    pool[moved] = best[moved]
    return out, pool


class CohortTracker:
    """`find_cohorts` looked at every `every_minutes` of log time (see `_cadence`)."""

    def __init__(self) -> None:
        self._cadence: Cadence[Cohorts] = Cadence()

    def update(self, state: DetectorState, cfg: CohortConfig) -> Cohorts:
        last = self._cadence.last
        again = self._cadence.reuse(state.now_us, cfg.every_minutes)
        if again is not None:
            return again.grown(state.size)
        shape = AccountShape.of(state, cfg)
        return self._cadence.keep(find_cohorts(shape, cfg, last, ItemShape.of(state),
                                               EdgeShape.of(state, cfg)))
