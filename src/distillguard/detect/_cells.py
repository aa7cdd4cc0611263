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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from distillguard.detect._config import DetectConfig
from distillguard.detect._links import PairIndex, key_groups
from distillguard.detect._state import LINK_KINDS, TEMPLATE_KINDS, DetectorState

_IS_TEMPLATE = np.isin(np.arange(len(LINK_KINDS)), [LINK_KINDS.index(k) for k in TEMPLATE_KINDS])
KeyProfile = Callable[[np.ndarray], np.ndarray]  # shared-key ids -> their harvest profiles


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
    solo: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per cell: one account

    @classmethod
    def none(cls, m: int) -> Cells:
        return cls(np.full(m, -1, np.int64), np.full(m, -1, np.int64), np.zeros(0, np.int64),
                   np.zeros(0), [], np.zeros(0, np.int64), np.full(m, -1, np.int64),
                   np.zeros(m, np.int64), np.zeros(m), np.zeros(0, bool))

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
            self.solo,
        )


class CellTracker:
    """Looks for cells at most every `cells.every_minutes` of log time and reuses the answer."""

    def __init__(self) -> None:
        self.last: Cells | None = None
        self.last_us = 0

    def update(self, state: DetectorState, pairs: np.ndarray, key_harvest: np.ndarray,
               profile: KeyProfile, harvest: np.ndarray, free: np.ndarray, cfg: DetectConfig,
               by_key: PairIndex, by_acct: PairIndex) -> Cells:
        """Cells as of now. `key_harvest` is the profile of each shared key where known
        (NaN elsewhere; `profile` computes it for the keys asked), `free` the accounts in no
        campaign."""
        every = int(cfg.cells.every_minutes * 60_000_000)
        if self.last is not None and state.now_us - self.last_us < every:
            return self.last.grown(state.size)
        self.last_us = state.now_us
        # Both looks start from the pairs of the harvest-like accounts in no campaign: gathering
        # them is most of the cost, so it is done once.
        c = cfg.cells
        cand = free & (harvest >= min(c.min_member_harvest, c.solo_min_direct_harvest))
        theirs = pairs[by_acct.select(pairs, cand, ordered=False)] if (
            c.enabled and state.shared_keys and cand.any()) else np.zeros((0, 4), np.int64)
        cells = find_cells(state, pairs, key_harvest, profile, harvest, free, cfg, by_key,
                           theirs)
        self.last = find_solo(state, pairs, key_harvest, profile, harvest, free, cfg, by_key,
                              cells, theirs)
        return self.last


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
    theirs = theirs[cand[theirs[:, 2]]]
    is_template = _IS_TEMPLATE[theirs[:, 0]]
    on_tmpl = theirs[is_template]
    on_tmpl = on_tmpl[state.key_counts[code[on_tmpl[:, 3]], 0] >= c.min_key_events]
    busy = np.zeros(n_keys, bool)
    busy[on_tmpl[:, 3]] = True
    busy = np.flatnonzero(busy)
    key_harvest = key_harvest[:n_keys].copy()
    todo = busy[np.isnan(key_harvest[busy])]
    if len(todo):
        key_harvest[todo] = profile(todo)
    hot = np.zeros(n_keys, bool)
    hot[busy] = key_harvest[busy] >= c.min_key_harvest
    on_hot = on_tmpl[hot[on_tmpl[:, 3]]]
    cand = np.zeros(m, bool)
    cand[on_hot[:, 2]] = True
    if cand.sum() < 2:
        return out
    # Ties: small non-template keys that two or more candidates share.
    mine = theirs[~is_template & cand[theirs[:, 2]]]
    mine = mine[state.key_accounts[code[mine[:, 3]]] <= c.max_tie_accounts]
    per_key = np.bincount(mine[:, 3], minlength=n_keys)
    mine = mine[per_key[mine[:, 3]] >= 2]
    if not len(mine):
        return out
    # Tie groups: connected components of candidates through the keys they share.
    nodes = m + n_keys
    group = key_groups(mine, m, n_keys)
    tied = np.zeros(m, bool)
    tied[mine[:, 2]] = True
    # A cell: a tie group with two or more members on one hot template key.
    hot_cand = on_hot[tied[on_hot[:, 2]]]
    pair_id = hot_cand[:, 3] * nodes + group[hot_cand[:, 2]]
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
    is_member[on_cell[:, 2]] = True
    out.member[is_member] = np.searchsorted(groups, group[np.flatnonzero(is_member)])
    # Per cell: the key with the most traffic, the kinds of tie.
    traffic = state.key_counts[code[cell_keys], 0]
    order = np.lexsort((-traffic, cell_of_pair))
    first = np.r_[True, cell_of_pair[order][1:] != cell_of_pair[order][:-1]]
    out.key = cell_keys[order][first]
    out.key_profile = key_harvest
    out.size = np.bincount(out.member[is_member], minlength=n_cells)
    out.solo = np.zeros(n_cells, bool)
    tie_rows = mine[is_member[mine[:, 2]]]
    tie_cell = out.member[tie_rows[:, 2]]
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
    on = on[out.member[on[:, 2]] < 0]
    if not len(on):
        return
    sent = state.pair_events(on[:, 1], on[:, 2])
    share_of = sent / np.maximum(state.key_counts[on[:, 1], 0], 1.0)
    # Per (account, cell): of the cell keys it sends enough on, the one where its share is
    # largest (a popular system prompt carries other traffic too; a request counts on several
    # keys, so shares are not added up).
    enough = sent >= c.carrier_min_events
    on, sent, share_of = on[enough], sent[enough], share_of[enough]
    n_cells = len(out.size)
    slot = on[:, 2] * n_cells + key_cell[on[:, 3]]
    order = np.lexsort((-share_of, slot))
    first = order[np.r_[True, slot[order][1:] != slot[order][:-1]]] if len(order) else order
    mine, share = sent[first], share_of[first]
    carry = share >= c.carrier_min_share
    rows = first[carry]
    acct = on[rows, 2]
    out.carries[acct] = key_cell[on[rows, 3]]
    out.carrier_key[acct] = on[rows, 3]
    out.carried_events[acct] = mine[carry]
    out.carried_share[acct] = share[carry]


def find_solo(state: DetectorState, pairs: np.ndarray, key_harvest: np.ndarray,
              profile: KeyProfile, harvest: np.ndarray, free: np.ndarray, cfg: DetectConfig,
              by_key: PairIndex, cells: Cells, theirs: np.ndarray) -> Cells:
    """`cells` plus the solo cells (one direct account and its carrier; see the module);
    `theirs`: the pairs of a superset of the candidates."""
    n_keys = state.shared_keys
    c = cfg.cells
    if not (c.enabled and c.solo_enabled) or not n_keys:
        return cells
    cand = free & (harvest >= c.solo_min_direct_harvest) & (cells.member < 0)
    if not cand.any():
        return cells
    # The candidates' busy template keys with few accounts, then every pair on them (few).
    # (Per pair row, not per key: a replay holds millions of keys and looks every hour.)
    theirs = theirs[_IS_TEMPLATE[theirs[:, 0]]]
    theirs = theirs[(state.key_accounts[theirs[:, 1]] <= c.solo_max_key_accounts)
                    & (state.key_counts[theirs[:, 1], 0] >= c.solo_min_key_events)]
    theirs = theirs[cand[theirs[:, 2]]]
    if not len(theirs):
        return cells
    keys = np.zeros(n_keys, bool)
    keys[theirs[:, 3]] = True
    on = pairs[by_key.select(pairs, keys, ordered=False)]
    on = on[_IS_TEMPLATE[on[:, 0]]]
    n_req = state.key_counts[on[:, 1], 0]
    sent = state.pair_events(on[:, 1], on[:, 2])
    share = sent / np.maximum(n_req, 1.0)
    own = np.maximum(state.counters["n"][on[:, 2]], 1)
    # The carrier: most of the key's requests (so at most one per key), a small part of its own.
    carrier = (share >= c.solo_min_carrier_share) & (sent / own <= c.solo_max_carrier_focus)
    sids, at = np.unique(on[:, 3], return_inverse=True)
    key_carrier = np.full(len(sids), -1, np.int64)
    key_carrier[at[carrier]] = on[carrier, 2]
    carried_n = np.zeros(len(sids))
    carried_n[at[carrier]] = sent[carrier]
    # The direct account: the key's other requests (all its own when it is the only other
    # account) are a real part of its traffic.
    rest = n_req - carried_n[at]
    direct = (cand[on[:, 2]] & (key_carrier[at] >= 0) & (key_carrier[at] != on[:, 2])
              & (rest / own >= c.solo_min_direct_focus))
    hits, hit_at, hit_req = on[direct], at[direct], n_req[direct]
    if not len(hits):
        return cells
    key_harvest = (cells.key_profile if len(cells.key_profile) == n_keys
                   else key_harvest[:n_keys]).copy()
    hit_keys = np.unique(hits[:, 3])
    todo = hit_keys[np.isnan(key_harvest[hit_keys])]
    if len(todo):
        key_harvest[todo] = profile(todo)
    hot = key_harvest[hits[:, 3]] >= c.solo_min_key_harvest
    hits, hit_at, hit_req = hits[hot], hit_at[hot], hit_req[hot]
    if not len(hits):
        return cells
    # One solo cell per direct account, on its key with the most traffic (a direct account
    # with two carriers goes with the one on that key); its carrier carries it.
    order = np.lexsort((-hit_req, hits[:, 2]))
    hits, hit_at, hit_req = hits[order], hit_at[order], hit_req[order]
    one = np.r_[True, hits[1:, 2] != hits[:-1, 2]]
    hits, hit_at, hit_req = hits[one], hit_at[one], hit_req[one]
    carriers = key_carrier[hit_at]
    # An account that is itself a direct account elsewhere stays a direct account; one that
    # already carries a cell keeps that.
    n_old = len(cells.size)
    out = Cells(cells.member.copy(), cells.carries.copy(), np.r_[cells.key, hits[:, 3]],
                key_harvest, [*cells.ties, *([[]] * len(hits))],
                np.r_[cells.size, np.ones(len(hits), np.int64)], cells.carrier_key.copy(),
                cells.carried_events.copy(), cells.carried_share.copy(),
                np.r_[cells.solo, np.ones(len(hits), bool)])
    new_cell = n_old + np.arange(len(hits))
    out.member[hits[:, 2]] = new_cell
    free_carrier = (out.carries[carriers] < 0) & (out.member[carriers] < 0)
    # (A carrier of two solo cells carries the first.)
    _, first = np.unique(carriers, return_index=True)
    take = np.zeros(len(hits), bool)
    take[first] = True
    take &= free_carrier
    r = carriers[take]
    out.carries[r] = new_cell[take]
    out.carrier_key[r] = hits[take, 3]
    out.carried_events[r] = carried_n[hit_at[take]].astype(np.int64)
    out.carried_share[r] = carried_n[hit_at[take]] / np.maximum(hit_req[take], 1.0)
    return out
