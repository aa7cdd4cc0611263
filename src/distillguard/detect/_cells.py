"""Small campaigns and the resellers that carry them: verdicts per prompt template.

An operator can send almost all of a campaign through a reseller's account, beside the
reseller's own customers, and keep only two or three accounts of its own. Those few are too
few to be a campaign (`links.min_accounts`), and the reseller's profile is diluted by its
customers, so neither looks like much. What gives them away is the traffic *on one template*:
a template key's own traffic (whoever sent it) can look like harvesting even when no account
that sends it does.

A *cell* is two or more harvest-like accounts, in no campaign, that send the same
harvest-like template and are also tied to each other by something else they share (an
address, a payment instrument, an e-mail domain, a sign-up burst) with few other accounts.
A template shared with no tie is a coincidence (a public prompt set); ties without a template
are a team. An account outside the cell that sends a good share of the cell's template traffic
carries it. Members and carriers are throttled, never blocked: a cell is small evidence, and a
carrier's other traffic may be its customers' own.

With ONE direct account there is nothing to tie, so a *solo* cell asks more of the template
instead: a harvest-like key with few accounts, almost all of whose requests come from one
account (the carrier) for which they are a small part of its own traffic (a reseller's
customer, not the carrier's own batch job), while a harvest-like account in no campaign sends
the rest, and that rest is a real part of its own traffic. Two companies that run the same
template (each its own job) and a busy account that sends it in passing do not qualify.
Generalised (config 2026.11.8, "carried keys"): the carried share may be split over several
carriers (each diluted: its own profile under the key's), a key may have several direct
accounts (one small campaign), a direct account may be one already flagged in a campaign (its
carrier is then throttled as carrying that campaign), and a milder direct account counts when
it mostly elicits reasoning. A *diluted* carrier (its own profile under the key's: its
customers' chats pull it down) may carry less of the key and be more of its own traffic
(config 2026.12.7): how much goes through the reseller is the operator's choice. See
docs/detection.md, "The decision", 6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from distillguard.detect._cadence import Cadence
from distillguard.detect._config import CellConfig, DetectConfig
from distillguard.detect._links import PairIndex, key_groups
from distillguard.detect._state import (
    COUNTERS,
    IS_TEMPLATE_LINK,
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_CODE,
    PAIR_KEY,
    PAIR_KIND,
    DetectorState,
)

KeyProfile = Callable[[np.ndarray], np.ndarray]  # shared-key ids -> their harvest profiles
_DISTILL = COUNTERS.index("distill")  # per-request P(distill), in percent, summed


@dataclass
class Cells:
    """Per account: its cell (-1: none) and the cell it carries (-1: none); per cell, evidence."""

    member: np.ndarray
    carries: np.ndarray
    key: np.ndarray  # per cell: its template key (shared-key id) with the most traffic
    key_profile: np.ndarray  # per shared key: the harvest profile of its traffic (NaN: not needed)
    ties: list[list[str]]  # per cell: the kinds of key its members share besides templates
    size: np.ndarray  # per cell: members
    carrier_key: np.ndarray  # per account: the carried cell's key it sends most on (-1: none)
    carried_events: np.ndarray  # per account: its requests on that key
    carried_share: np.ndarray  # ... as a share of all requests on it
    solo: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per cell: carried key
    # Per cell: the share of its key's requests that its carriers send (solo cells; 0 else).
    carried_by: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Per account: an account already flagged in a campaign whose carried key it carries (-1:
    # none); `carrier_key` and the carried counts say which key and how much.
    carries_peer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def none(cls, m: int) -> Cells:
        return cls(np.full(m, -1, np.int64), np.full(m, -1, np.int64), np.zeros(0, np.int64),
                   np.zeros(0), [], np.zeros(0, np.int64), np.full(m, -1, np.int64),
                   np.zeros(m, np.int64), np.zeros(m), np.zeros(0, bool), np.zeros(0),
                   np.full(m, -1, np.int64))

    def record_carried(self, acct: np.ndarray, key: np.ndarray, events: np.ndarray,
                       share: np.ndarray) -> None:
        """Accounts `acct` carry `events` requests on shared key `key`, `share` of all on it."""
        self.carrier_key[acct] = key
        self.carried_events[acct] = events
        self.carried_share[acct] = share

    def grown(self, m: int) -> Cells:
        """The same answer for `m` accounts (accounts seen since are in no cell yet)."""
        n = len(self.member)
        if n >= m:
            return self
        pad = m - n
        return Cells(
            np.r_[self.member, np.full(pad, -1, np.int64)],
            np.r_[self.carries, np.full(pad, -1, np.int64)],
            self.key, self.key_profile, self.ties, self.size,
            np.r_[self.carrier_key, np.full(pad, -1, np.int64)],
            np.r_[self.carried_events, np.zeros(pad, np.int64)],
            np.r_[self.carried_share, np.zeros(pad)],
            self.solo, self.carried_by,
            np.r_[self.carries_peer, np.full(pad, -1, np.int64)],
        )


class CandidatePairs:
    """The shared pairs of a set of accounts (the cells' candidates), kept from one look to
    the next: the set changes by a few accounts between looks, and pairs are only appended.

    A look keeps the rows of the accounts still in the set, adds the pairs appended since of
    those, and all the pairs of the accounts new to the set. The rows come in no particular
    order (the cells are the same whatever the order)."""

    def __init__(self) -> None:
        self.rows = np.zeros((0, 4), np.int64)
        self.n = 0  # shared pairs read
        self.accounts = np.zeros(0, bool)  # the set as of the last look

    def update(self, pairs: np.ndarray, accounts: np.ndarray, by_acct: PairIndex) -> np.ndarray:
        """All the shared pairs of `accounts` (a mask over accounts)."""
        was = np.zeros(len(accounts), bool)
        k = min(len(accounts), len(self.accounts))
        was[:k] = self.accounts[:k]
        stay = accounts & was
        kept = self.rows
        if (was & ~accounts).any():
            kept = kept[stay[kept[:, PAIR_ACCOUNT]]]
        new = pairs[self.n :]
        parts = [kept, new[stay[new[:, PAIR_ACCOUNT]]]]
        joined = accounts & ~was
        if joined.any():
            parts.append(pairs[by_acct.select(pairs, joined, ordered=False)])
        self.rows = np.concatenate(parts)
        self.n, self.accounts = len(pairs), accounts.copy()
        return self.rows


def small_template_keys(state: DetectorState, sids: np.ndarray, c: CellConfig) -> np.ndarray:
    """Per shared key of `sids`: a template key with at most `solo_max_key_accounts` accounts
    and at least `solo_min_key_events` requests (a carried key may be one of them)."""
    code = state.sid_code[sids]
    out: np.ndarray = (IS_TEMPLATE_LINK[state.sid_link[sids]]
                       & (state.key_accounts[code] <= c.solo_max_key_accounts)
                       & (state.key_counts[code, 0] >= c.solo_min_key_events))
    return out


class SmallTemplateKeys:
    """`small_template_keys` of every shared key, kept from one look to the next: a key's
    answer changes only with its traffic or accounts, so a look recomputes it for the keys
    changed since (`state.key_changed`) and keeps it for the others."""

    def __init__(self) -> None:
        self.on = np.zeros(0, bool)  # per shared key id
        self.seen = 0  # `state.applied` at the last look
        self.bars = (0, 0.0)  # the thresholds of the last look

    def update(self, state: DetectorState, c: CellConfig) -> np.ndarray:
        """Per shared key: `small_template_keys` (a view, valid until the next update)."""
        n_keys = state.shared_keys
        bars = (c.solo_max_key_accounts, c.solo_min_key_events)
        if bars != self.bars:  # other thresholds: every key afresh
            self.on, self.seen, self.bars = np.zeros(0, bool), 0, bars
        if len(self.on) < n_keys:
            grown = np.zeros(max(n_keys, 2 * len(self.on)), bool)
            grown[: len(self.on)] = self.on
            self.on = grown
        codes = np.flatnonzero(state.key_changed > self.seen)
        sids = state.key_sid[codes]
        sids = sids[sids >= 0]
        self.on[sids] = small_template_keys(state, sids, c)
        self.seen = state.applied
        return self.on[:n_keys]


class CellTracker:
    """Looks for cells at most every `cells.every_minutes` of log time and reuses the answer;
    keeps the candidates' pairs (`CandidatePairs`) and the small template keys
    (`SmallTemplateKeys`) between looks."""

    def __init__(self) -> None:
        self.looks: Cadence[Cells] = Cadence()
        self.candidates = CandidatePairs()
        self.small_keys = SmallTemplateKeys()

    def __setstate__(self, saved: dict[str, object]) -> None:
        # A checkpoint written without what the looks keep: the next look reads it afresh.
        self.__dict__.update(saved)
        if "candidates" not in saved:
            self.candidates = CandidatePairs()
        if "small_keys" not in saved:
            self.small_keys = SmallTemplateKeys()

    def update(self, state: DetectorState, pairs: np.ndarray, key_harvest: np.ndarray,
               profile: KeyProfile, harvest: np.ndarray, free: np.ndarray, cfg: DetectConfig,
               by_key: PairIndex, by_acct: PairIndex,
               flagged: np.ndarray | None = None,
               elicitation: np.ndarray | None = None) -> Cells:
        """Cells as of now. `key_harvest` is the profile of each shared key where known
        (NaN elsewhere; `profile` computes it for the keys asked), `free` the accounts in no
        campaign, `flagged` those in a campaign that is throttled or blocked (their carried
        keys give their carriers away), `elicitation` each account's share of requests for
        reasoning, grades or training data."""
        # A look holds while its members are in no campaign: one that a graph campaign took
        # since must not take them back (it would split that campaign into pieces each too
        # small to throttle); cells are of free accounts, as at a fresh look.
        last = self.looks.reuse(state.now_us, cfg.cells.every_minutes,
                                lambda cells: _members_free(cells, free))
        if last is not None:
            return last.grown(state.size)
        # Both looks start from the pairs of the harvest-like accounts in no campaign: gathering
        # them is most of the cost, so it is done once (and kept for the next look).
        c = cfg.cells
        cand = free & (harvest >= min(c.min_member_harvest, c.solo_min_direct_harvest))
        if elicitation is not None and c.solo_mild_direct_harvest < c.solo_min_direct_harvest:
            cand |= free & _mild(harvest, elicitation, cfg)
        theirs = (self.candidates.update(pairs, cand, by_acct) if c.enabled and state.shared_keys
                  else np.zeros((0, 4), np.int64))
        cells = find_cells(state, pairs, key_harvest, profile, harvest, free, cfg, by_key,
                           theirs)
        held = held_direct(self.looks.last)
        small = (self.small_keys.update(state, c) if c.enabled and c.solo_enabled
                 else None)
        return self.looks.keep(find_solo(state, pairs, key_harvest, profile, harvest, free, cfg,
                                         by_key, cells, theirs, flagged, elicitation, held,
                                         small))


def _members_free(cells: Cells, free: np.ndarray) -> bool:
    """Whether every member of `cells` is still in no campaign (`free`)."""
    member = cells.member[: len(free)]
    return bool(free[: len(member)][member >= 0].all())


def held_direct(cells: Cells | None) -> np.ndarray:
    """(account, shared key id) rows: the direct accounts of carried keys in `cells` (a look's
    answer) and their keys: solo cells' members with the cell's key, and the flagged accounts
    whose key a carrier carries (`carries_peer`, `carrier_key`)."""
    if cells is None or not len(cells.member):
        return np.zeros((0, 2), np.int64)
    member = cells.member
    solo = np.flatnonzero(member >= 0)
    solo = solo[cells.solo[member[solo]]]
    peer = np.flatnonzero(cells.carries_peer >= 0)
    return np.concatenate([
        np.stack([solo, cells.key[member[solo]]], axis=1),
        np.stack([cells.carries_peer[peer], cells.carrier_key[peer]], axis=1),
    ]).astype(np.int64)


def _mild(harvest: np.ndarray, elicitation: np.ndarray, cfg: DetectConfig) -> np.ndarray:
    """Accounts under `solo_min_direct_harvest` that may still be a direct account: from
    `solo_mild_direct_harvest` up, when most of what they ask for is reasoning, grades or
    training data (`links.member_min_elicitation`, the bar of campaign membership too)."""
    out: np.ndarray = ((harvest >= cfg.cells.solo_mild_direct_harvest)
                       & (elicitation[: len(harvest)] >= cfg.links.member_min_elicitation))
    return out


def find_cells(state: DetectorState, pairs: np.ndarray, key_harvest: np.ndarray,
               profile: KeyProfile, harvest: np.ndarray, free: np.ndarray, cfg: DetectConfig,
               by_key: PairIndex, theirs: np.ndarray) -> Cells:
    """The cells as of now; `theirs`: the pairs of a superset of the candidates."""
    m, n_keys = state.size, state.shared_keys
    out = Cells.none(m)
    c = cfg.cells
    if not c.enabled or not n_keys:
        return out
    code = state.sid_code[:n_keys]
    # Candidates first (few accounts): a campaign's busy keys hold far more pairs.
    cand = free & (harvest >= c.min_member_harvest)
    if cand.sum() < 2:
        return out
    theirs = theirs[cand[theirs[:, PAIR_ACCOUNT]]]
    is_template = IS_TEMPLATE_LINK[theirs[:, PAIR_KIND]]
    rows = np.flatnonzero(is_template)
    on_tmpl = theirs[rows[state.key_counts[theirs[rows, PAIR_CODE], 0] >= c.min_key_events]]
    busy = np.zeros(n_keys, bool)
    busy[on_tmpl[:, PAIR_KEY]] = True
    busy = np.flatnonzero(busy)
    key_harvest = key_harvest[:n_keys].copy()
    todo = busy[np.isnan(key_harvest[busy])]
    if len(todo):
        key_harvest[todo] = profile(todo)
    hot = np.zeros(n_keys, bool)
    hot[busy] = key_harvest[busy] >= c.min_key_harvest
    on_hot = on_tmpl[hot[on_tmpl[:, PAIR_KEY]]]
    cand = np.zeros(m, bool)
    cand[on_hot[:, PAIR_ACCOUNT]] = True
    if cand.sum() < 2:
        return out
    # Ties: small non-template keys that two or more candidates share.
    mine = theirs[~is_template & cand[theirs[:, PAIR_ACCOUNT]]]
    mine = mine[state.key_accounts[code[mine[:, PAIR_KEY]]] <= c.max_tie_accounts]
    per_key = np.bincount(mine[:, PAIR_KEY], minlength=n_keys)
    mine = mine[per_key[mine[:, PAIR_KEY]] >= 2]
    if not len(mine):
        return out
    # Tie groups: connected components of candidates through the keys they share.
    nodes = m + n_keys
    group = key_groups(mine, m, n_keys)
    tied = np.zeros(m, bool)
    tied[mine[:, PAIR_ACCOUNT]] = True
    # A cell: a tie group with two or more members on one hot template key.
    hot_cand = on_hot[tied[on_hot[:, PAIR_ACCOUNT]]]
    pair_id = hot_cand[:, PAIR_KEY] * nodes + group[hot_cand[:, PAIR_ACCOUNT]]
    uniq, counts = np.unique(pair_id, return_counts=True)
    cell_pairs = uniq[counts >= 2]
    if not len(cell_pairs):
        return out
    cell_keys, cell_groups = cell_pairs // nodes, cell_pairs % nodes
    groups, cell_of_pair = np.unique(cell_groups, return_inverse=True)
    n_cells = len(groups)
    # Members: the tied candidates that send a cell's template.
    on_cell = hot_cand[np.isin(pair_id, cell_pairs)]
    is_member = np.zeros(m, bool)
    is_member[on_cell[:, PAIR_ACCOUNT]] = True
    out.member[is_member] = np.searchsorted(groups, group[np.flatnonzero(is_member)])
    # Per cell: the key with the most traffic, the kinds of tie.
    traffic = state.key_counts[code[cell_keys], 0]
    order = np.lexsort((-traffic, cell_of_pair))
    first = np.r_[True, cell_of_pair[order][1:] != cell_of_pair[order][:-1]]
    out.key = cell_keys[order][first]
    out.key_profile = key_harvest
    out.size = np.bincount(out.member[is_member], minlength=n_cells)
    out.solo = np.zeros(n_cells, bool)
    out.carried_by = np.zeros(n_cells)
    tie_rows = mine[is_member[mine[:, PAIR_ACCOUNT]]]
    tie_cell = out.member[tie_rows[:, PAIR_ACCOUNT]]
    out.ties = [sorted({LINK_KINDS[k] for k in np.unique(tie_rows[tie_cell == i, 0])})
                for i in range(n_cells)]
    _carriers(state, pairs, out, cell_keys, cell_of_pair, cfg, by_key)
    return out


def _carriers(state: DetectorState, pairs: np.ndarray, out: Cells, cell_keys: np.ndarray,
              cell_of_key: np.ndarray, cfg: DetectConfig, by_key: PairIndex) -> None:
    """Accounts outside a cell that send a good share of the traffic on one of its keys."""
    c = cfg.cells
    n_keys = state.shared_keys
    key_cell = np.full(n_keys, -1, np.int64)
    key_cell[cell_keys] = cell_of_key  # a key of two cells (rare) counts for the later one
    on = pairs[by_key.select(pairs, key_cell >= 0, ordered=False)]
    on = on[out.member[on[:, PAIR_ACCOUNT]] < 0]
    if not len(on):
        return
    sent = state.pair_events(on[:, PAIR_CODE], on[:, PAIR_ACCOUNT])
    share_of = sent / np.maximum(state.key_counts[on[:, PAIR_CODE], 0], 1.0)
    # Per (account, cell): of the cell keys it sends enough on, the one where its share is
    # largest (a popular system prompt carries other traffic too; a request counts on several
    # keys, so shares are not added up).
    enough = sent >= c.carrier_min_events
    on, sent, share_of = on[enough], sent[enough], share_of[enough]
    n_cells = len(out.size)
    slot = on[:, PAIR_ACCOUNT] * n_cells + key_cell[on[:, PAIR_KEY]]
    order = np.lexsort((-share_of, slot))
    first = order[np.r_[True, slot[order][1:] != slot[order][:-1]]] if len(order) else order
    mine, share = sent[first], share_of[first]
    carry = share >= c.carrier_min_share
    rows = first[carry]
    acct = on[rows, PAIR_ACCOUNT]
    out.carries[acct] = key_cell[on[rows, PAIR_KEY]]
    out.record_carried(acct, on[rows, PAIR_KEY], mine[carry], share[carry])


def _diluted(harvest: np.ndarray, key_harvest: np.ndarray, margin: float) -> np.ndarray:
    """An account is *diluted* on a key when its own profile is at least `margin` under the
    profile of the key's traffic: a reseller mixes an operator's requests with its customers'
    chats, while an account running a job of its own looks like its job (and an evaluation
    runner re-sending a benchmark item is as harvest-like as the item)."""
    out: np.ndarray = harvest <= key_harvest - margin
    return out


def _content_contrast(key_sum: np.ndarray, key_n: np.ndarray, acct_sum: np.ndarray,
                      acct_n: np.ndarray, sent: np.ndarray) -> np.ndarray:
    """How much more distillation-like a key's requests are than an account's other ones:
    the key's mean of a per-request score minus that of the account's requests off the key.

    `key_sum`/`key_n`: the score summed over the key's requests and their number;
    `acct_sum`/`acct_n`: the same over the account's; `sent`: its requests on the key, taken to
    score as the key's do (the key's requests of all its accounts are the estimate)."""
    key_mean = key_sum / np.maximum(key_n, 1.0)
    rest = np.maximum(acct_sum - sent * key_mean, 0.0) / np.maximum(acct_n - sent, 1.0)
    out: np.ndarray = key_mean - rest
    return out


def _solo_carriers(c: CellConfig, on: np.ndarray, at: np.ndarray, sent: np.ndarray,
                   share: np.ndarray, own: np.ndarray, harvest: np.ndarray,
                   direct_ok: np.ndarray, key_harvest: np.ndarray,
                   profile: KeyProfile, contrast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair row of `on`: is its account a carrier of the key, and is it diluted there.

    A carrier sends `>= solo_min_carrier_part` of the key, which is `<= solo_max_carrier_focus`
    of its own requests; a diluted one (`_diluted`) may go up to `solo_max_diluted_focus` (an
    operator can be a good part of a small reseller's traffic). A *contrasting* one, whose
    requests on the key are `>= solo_min_content_contrast` more distillation-like than its
    other requests (`contrast`, see `_content_contrast`: someone else's job passing through; a
    company's own templates look like its other jobs), counts as diluted and may go up to
    `solo_max_contrast_focus`: how much of a reseller's traffic an operator is, is the
    operator's choice. `key_harvest` (per shared key, NaN: not computed) is filled in place for
    the keys where it decides.
    """
    focus = sent / own
    part = share >= c.solo_min_carrier_part
    strict = part & (focus <= c.solo_max_carrier_focus)
    contrasting = (part & (contrast >= c.solo_min_content_contrast)
                   & (focus <= c.solo_max_contrast_focus))
    loose = part & (focus <= max(c.solo_max_diluted_focus, c.solo_max_carrier_focus))
    # Only keys with a would-be carrier and another harvest-like account on them can be
    # carried keys: their profiles are the ones needed (few keys).
    other = np.bincount(at, weights=direct_ok[on[:, PAIR_ACCOUNT]] & ~(loose | contrasting),
                        minlength=int(at.max()) + 1 if len(at) else 0)
    rows = np.flatnonzero(loose & (other[at] > 0))
    need = np.unique(on[rows, PAIR_KEY])
    todo = need[np.isnan(key_harvest[need])]
    if len(todo):
        key_harvest[todo] = profile(todo)
    diluted = np.zeros(len(on), bool)
    diluted[rows] = _diluted(harvest[on[rows, PAIR_ACCOUNT]], key_harvest[on[rows, PAIR_KEY]],
                             c.solo_min_dilution)
    diluted |= contrasting
    return strict | (loose & diluted) | contrasting, diluted


def find_solo(state: DetectorState, pairs: np.ndarray, key_harvest: np.ndarray,
              profile: KeyProfile, harvest: np.ndarray, free: np.ndarray, cfg: DetectConfig,
              by_key: PairIndex, cells: Cells, theirs: np.ndarray,
              flagged: np.ndarray | None = None,
              elicitation: np.ndarray | None = None,
              held: np.ndarray | None = None,
              small_keys: np.ndarray | None = None) -> Cells:
    """`cells` plus the solo cells (carried keys: see the module); `theirs`: the pairs of a
    superset of the candidates (and of the `flagged` accounts); `held`: (account, shared key
    id) rows that the last look made direct accounts of carried keys (`held_direct`);
    `small_keys`: per shared key, `small_template_keys` (computed here when None)."""
    m, n_keys = state.size, state.shared_keys
    c = cfg.cells
    if not (c.enabled and c.solo_enabled) or not n_keys:
        return cells
    strong = harvest >= c.solo_min_direct_harvest
    if elicitation is not None:
        strong = strong | _mild(harvest, elicitation, cfg)
    cand = free & strong & (cells.member < 0)
    # A direct account may also be one already flagged: in a throttled or blocked campaign,
    # or in a cell. It keeps what it has; its key only gives its carriers away.
    known = cells.member >= 0
    if flagged is not None:
        known = known | flagged[:m]
    known &= ~cand
    direct_ok = cand | known
    if not direct_ok.any():
        return cells
    # The candidates' busy template keys with few accounts, then every pair on them (few).
    if small_keys is None:
        small_keys = small_template_keys(state, np.arange(n_keys), c)
    small = small_keys[:n_keys]
    mine = theirs[cand[theirs[:, PAIR_ACCOUNT]], PAIR_KEY]
    keys = np.zeros(n_keys, bool)
    keys[mine[small[mine]]] = True
    if known.any():
        # Flagged accounts are many (a hydra's members) and their pairs more: their keys are
        # found from the keys' side, among the few busy template keys with few accounts.
        keys |= small
    if not keys.any():
        return cells
    on = pairs[by_key.select(pairs, keys, ordered=False)]
    on = on[IS_TEMPLATE_LINK[on[:, PAIR_KIND]]]
    sent = state.pair_events(on[:, PAIR_CODE], on[:, PAIR_ACCOUNT])
    own = np.maximum(state.counters["n"][on[:, PAIR_ACCOUNT]], 1)
    sids, first, at = np.unique(on[:, PAIR_KEY], return_index=True, return_inverse=True)
    n_req = state.key_counts[on[first, PAIR_CODE], 0].astype(np.float64)
    share = sent / np.maximum(n_req[at], 1.0)
    key_harvest = (cells.key_profile if len(cells.key_profile) == n_keys
                   else key_harvest[:n_keys]).copy()
    # Carriers: accounts that each send a good part of the key's requests, a small part of
    # their own (a reseller's customer, not its own job); together most of the key. A
    # *diluted* carrier (see `_diluted`) may send less of the key and more of its own.
    score = state.key_counts[on[:, PAIR_CODE], _DISTILL] / 100.0  # P(distill) in percent
    contrast = _content_contrast(score, n_req[at], state.counters["distill"][on[:, PAIR_ACCOUNT]] / 100.0,
                                 own, sent)
    carrier, diluted = _solo_carriers(c, on, at, sent, share, own, harvest, direct_ok,
                                      key_harvest, profile, contrast)
    carried_n = np.bincount(at, weights=np.where(carrier, sent, 0), minlength=len(sids))
    bar = np.where(np.bincount(at, weights=carrier & ~diluted, minlength=len(sids)) > 0,
                   c.solo_min_carrier_share, c.solo_min_diluted_share)
    # Besides its carriers and direct accounts, a carried key has at most
    # `solo_max_key_strangers` other accounts (a public prompt gathers many).
    strangers = np.bincount(at, weights=~carrier & ~direct_ok[on[:, PAIR_ACCOUNT]], minlength=len(sids))
    carried_key = ((carried_n / np.maximum(n_req, 1.0) >= bar)
                   & (strangers <= c.solo_max_key_strangers))
    # An account already flagged in a campaign sends its campaign's public prompts too
    # (benchmark items that evaluation runners re-send, also sent by other campaigns' thin
    # accounts): its key counts only when ONE carrier sends most of it and every other
    # account on it is flagged too.
    top = np.zeros(len(sids))
    np.maximum.at(top, at, np.where(carrier, share, 0.0))
    unflagged = np.bincount(at, weights=~carrier & ~known[on[:, PAIR_ACCOUNT]], minlength=len(sids))
    one_carrier = top >= bar
    single = one_carrier & (unflagged == 0)
    # Direct accounts: the key's other requests, shared among its harvest-like senders (all
    # of them its own when it is the only one), are a real part of their traffic. Flagged
    # senders share them too: an account that sent a flagged campaign's template a few times
    # is not handed the members' requests on it.
    sender = direct_ok[on[:, PAIR_ACCOUNT]] & ~carrier & carried_key[at]
    # A direct account of a key at the last look stays one when it joins a flagged campaign:
    # being flagged is more evidence, not less (its carrier is not let go).
    was = np.zeros(len(on), bool)
    if held is not None and len(held):
        was = np.isin(on[:, PAIR_ACCOUNT] * n_keys + on[:, PAIR_KEY],
                      held[:, 0] * n_keys + held[:, 1])
    maybe = sender & (cand[on[:, PAIR_ACCOUNT]] | single[at] | was)
    n_direct = np.maximum(np.bincount(at, weights=sender, minlength=len(sids)), 1.0)
    rest = (n_req - carried_n) / n_direct
    focus = np.maximum(sent, rest[at]) / own
    direct = maybe & (focus >= c.solo_min_direct_focus)
    # (Flagged accounts that sent a public item once or twice each, the thin accounts of a
    # large campaign, do not make it theirs: they send `harvest.min_events` each on average.)
    direct &= cand[on[:, PAIR_ACCOUNT]] | (rest[at] >= cfg.harvest.min_events) | was
    if not direct.any():
        return cells
    hit_keys = np.unique(on[direct, PAIR_KEY])
    todo = hit_keys[np.isnan(key_harvest[hit_keys])]
    if len(todo):
        key_harvest[todo] = profile(todo)
    direct &= key_harvest[on[:, PAIR_KEY]] >= c.solo_min_key_harvest
    # Split between carriers, each must look diluted: its own profile under the key's (a
    # reseller mixes the operator's requests with its customers' chats). Two evaluation
    # runners that re-send one benchmark item are as harvest-like as the item itself.
    heavy = carrier & ~one_carrier[at] & (harvest[on[:, PAIR_ACCOUNT]] >= key_harvest[on[:, PAIR_KEY]])
    direct &= np.bincount(at, weights=heavy, minlength=len(sids))[at] == 0
    if not direct.any():
        return cells
    # Each direct account goes with its carried key with the most traffic.
    rows = np.flatnonzero(direct)
    order = np.lexsort((-n_req[at[rows]], on[rows, PAIR_ACCOUNT]))
    rows = rows[order]
    rows = rows[np.r_[True, on[rows[1:], PAIR_ACCOUNT] != on[rows[:-1], PAIR_ACCOUNT]]]
    is_new = cand[on[rows, PAIR_ACCOUNT]]
    # One solo cell per key for its free direct accounts.
    new_rows = rows[is_new]
    cell_keys, cell_of = np.unique(at[new_rows], return_inverse=True)
    n_old, n_new = len(cells.size), len(cell_keys)
    out = Cells(cells.member.copy(), cells.carries.copy(), np.r_[cells.key, sids[cell_keys]],
                key_harvest, [*cells.ties, *([[]] * n_new)],
                np.r_[cells.size, np.bincount(cell_of, minlength=n_new)],
                cells.carrier_key.copy(), cells.carried_events.copy(),
                cells.carried_share.copy(), np.r_[cells.solo, np.ones(n_new, bool)],
                np.r_[cells.carried_by, carried_n[cell_keys] / np.maximum(n_req[cell_keys], 1)],
                cells.carries_peer.copy())
    out.member[on[new_rows, PAIR_ACCOUNT]] = n_old + cell_of
    # Their carriers carry the cell (an account that is itself a direct account elsewhere
    # stays one; one that already carries a cell keeps that; one that carries two solo cells
    # carries the first).
    key_cell = np.full(len(sids), -1, np.int64)
    key_cell[cell_keys] = n_old + np.arange(n_new)
    crow = np.flatnonzero(carrier & (key_cell[at] >= 0))
    crow = crow[np.unique(on[crow, PAIR_ACCOUNT], return_index=True)[1]]
    crow = crow[(out.carries[on[crow, PAIR_ACCOUNT]] < 0) & (out.member[on[crow, PAIR_ACCOUNT]] < 0)]
    acct = on[crow, PAIR_ACCOUNT]
    out.carries[acct] = key_cell[at[crow]]
    out.record_carried(acct, on[crow, PAIR_KEY], sent[crow], share[crow])
    # The carriers of keys whose direct accounts are already flagged carry those accounts'
    # traffic (the first such account on the key).
    old_rows = rows[~is_new]
    peer_of_key = np.full(len(sids), -1, np.int64)
    peer_of_key[at[old_rows][::-1]] = on[old_rows, PAIR_ACCOUNT][::-1]
    crow = np.flatnonzero(carrier & (peer_of_key[at] >= 0))
    crow = crow[np.unique(on[crow, PAIR_ACCOUNT], return_index=True)[1]]
    acct = on[crow, PAIR_ACCOUNT]
    free_acct = ((out.carries[acct] < 0) & (out.member[acct] < 0) & (out.carries_peer[acct] < 0)
                 & ~known[acct])
    crow, acct = crow[free_acct], acct[free_acct]
    out.carries_peer[acct] = peer_of_key[at[crow]]
    out.record_carried(acct, on[crow, PAIR_KEY], sent[crow], share[crow])
    return out
