"""Which shared pairs tie accounts into campaigns, kept up to date window after window.

The scoring decides after every window of the replay. Its link rules are simple per pair (a
pair counts when its key is suspicious and its account eligible; an account joins when enough
kinds of link count; campaigns are the connected components of the pairs of the accounts that
join), but the pairs number in the millions on a large log while a window adds a few
thousand and flips few keys or accounts. `LinkTracker` keeps the per-account counts and the
components from one window to the next and touches only the pairs whose key or account
changed, with the same results as recomputing everything (the tests compare both).
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from distillguard.detect._state import (
    IP_CHURN_FULL,
    LINK_KINDS,
    PAIR_ACCOUNT,
    PAIR_KEY,
    PAIR_KIND,
    add_cells,
)

_IP = LINK_KINDS.index("ip")


def key_groups(pairs: np.ndarray, m: int, n_keys: int) -> np.ndarray:
    """Per node (accounts 0..m-1, then keys): its connected component in the graph of the
    (account, key sid) pairs given (columns 2 and 3 of shared pairs)."""
    nodes = m + n_keys
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, PAIR_ACCOUNT], m + pairs[:, PAIR_KEY])),
                       shape=(nodes, nodes))
    _, group = connected_components(graph, directed=False)
    out: np.ndarray = group
    return out


class PairIndex:
    """Positions of the shared pairs grouped by one column (key sid or account).

    Pairs are only ever appended. The index covers the first `n` of them, sorted by the
    column; pairs appended since are scanned directly. When they pass an eighth of the
    indexed ones, a merged index is built in a background thread (the replay's critical path
    is the thread that calls `select`), and taken once another quarter of that many have
    arrived: at the same calls whatever the threads do, so every run selects alike.
    The column of the pairs past the index is kept apart, contiguous (`_tail`): every call
    reads it, and a strided read of the pairs' column costs a third more.
    """

    def __init__(self, column: int) -> None:
        self.column = column
        self.n = 0
        self.order = np.zeros(0, np.int64)
        self.start = np.zeros(1, np.int64)
        self._next: Future[tuple[np.ndarray, np.ndarray]] | None = None
        self._next_n = 0  # the pairs the index under way covers
        self._tail_clear()

    def _tail_clear(self) -> None:
        # `_tail[:_tail_used]` is the column of pairs[_tail_at : _tail_at + _tail_used].
        self._tail = np.zeros(0, np.int64)
        self._tail_at = self.n
        self._tail_used = 0

    def __getstate__(self) -> dict[str, object]:
        # A checkpoint (the detector service pickles its state) waits for the merge under way
        # and keeps its result, so a restored index takes it at the same call as this one.
        # The tail's column is read again from the pairs at the next call.
        state = dict(self.__dict__)
        if self._next is not None:
            state["_next"] = self._next.result()
        for name in ("_tail", "_tail_at", "_tail_used"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        merged = state.pop("_next")
        self.__dict__.update(state)
        self._tail_clear()
        self._next = None
        if merged is not None:
            done: Future[tuple[np.ndarray, np.ndarray]] = Future()
            done.set_result(merged)  # type: ignore[arg-type]
            self._next = done

    def select(self, pairs: np.ndarray, mask: np.ndarray, ordered: bool = True) -> np.ndarray:
        """Positions of the pairs whose column value `v` has `mask[v]` True.

        Ascending when `ordered`; otherwise grouped by value, which saves a sort of all of
        them where only the set matters.
        """
        n = len(pairs)
        limit = max(1 << 16, self.n // 8)
        if self._next is not None and n - self._next_n > limit // 4:
            self.order, self.start = self._next.result()
            self.n, self._next = self._next_n, None
            limit = max(1 << 16, self.n // 8)
        if self._next is None and n - self.n > limit:
            self._next_n = n
            # (A view of the pairs so far: later appends never write below `n`.)
            self._next = _background().submit(
                _merged, pairs[:n], self.column, self.n, self.order, self.start)
        tail_values = self._tail_values(pairs, n)
        if not mask.any():
            return np.zeros(0, np.int64)
        values = self.start
        sel = np.flatnonzero(mask[: len(values) - 1])
        lo = values[sel]
        counts = values[sel + 1] - lo
        ends = np.cumsum(counts)
        total = int(ends[-1]) if len(ends) else 0
        at = np.repeat(lo - ends + counts, counts) + np.arange(total)
        tail = self.n + np.flatnonzero(mask[tail_values])
        out = np.concatenate([self.order[at], tail])
        return np.sort(out) if ordered else out

    def _tail_values(self, pairs: np.ndarray, n: int) -> np.ndarray:
        """The column of pairs[self.n : n], contiguous: the pairs the index leaves out."""
        if self._tail_at != self.n:  # the index took a merge: its pairs leave the tail
            keep = self._tail[self.n - self._tail_at : self._tail_used]
            self._tail = keep.copy()
            self._tail_at, self._tail_used = self.n, len(keep)
        need = n - self._tail_at
        if need > len(self._tail):
            grown = np.empty(max(need, 2 * len(self._tail)), np.int64)
            grown[: self._tail_used] = self._tail[: self._tail_used]
            self._tail = grown
        if need > self._tail_used:
            self._tail[self._tail_used : need] = pairs[self._tail_at + self._tail_used : n,
                                                       self.column]
            self._tail_used = need
        out: np.ndarray = self._tail[:need]
        return out


@functools.cache
def _background() -> ThreadPoolExecutor:
    """One worker thread for the indexes' merges, started on first use."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="pair-index")


def _merged(pairs: np.ndarray, column: int, n: int, order: np.ndarray,
            start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The index (`order`, `start`) of the first `n` pairs, with the rest of `pairs` merged in.

    The appended pairs are sorted on their own, then both runs are merged by placing each
    element directly (within a value, the indexed pairs come first): linear in the pairs,
    with no pass over their column but the tail's.
    """
    values = pairs[n:, column]
    tail = np.argsort(values, kind="stable")
    values = values[tail]
    size = max(len(start) - 1, int(values[-1]) + 1 if len(values) else 0)
    old = np.diff(start)
    new = np.bincount(values, minlength=size)
    new_below = np.cumsum(new) - new  # appended pairs with a lower value
    old_upto = np.concatenate([start[1:], np.full(size - len(old), n)])
    merged = np.empty(len(pairs), np.int64)
    merged[np.arange(n) + np.repeat(new_below[: len(old)], old)] = order
    merged[np.arange(len(tail)) + old_upto[values]] = n + tail
    counts = new
    counts[: len(old)] += old
    return merged, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


class AddressChurn:
    """Per shared key: the summed address churn of its accounts, where the key is an address.

    An account's churn is `clip((addresses - 1) / IP_CHURN_FULL, 0, 1)`, so it is kept in whole
    units (quarters), as
    integers: sums that are exact whatever the order they are added in. Between calls it
    moves only for the accounts that used a new address, so only their pairs and the pairs
    appended since are read.
    """

    def __init__(self) -> None:
        self.n = 0  # pairs folded in
        self.units = np.zeros(0, np.int64)  # per account: its churn in quarters
        self.sums = np.zeros(0, np.int64)  # per shared key: its address pairs' units

    def update(self, pairs: np.ndarray, ip_count: np.ndarray, n_keys: int,
               by_acct: PairIndex) -> np.ndarray:
        """Per shared key, its accounts' churn summed (in quarters; 0 for other kinds)."""
        units = np.clip(ip_count - 1, 0, IP_CHURN_FULL)
        old = _grow(self.units, len(units), 0)
        self.sums = _grow(self.sums, n_keys, 0)
        moved = units != old
        if moved.any():
            pos = by_acct.select(pairs, moved, ordered=False)
            rows = pairs[pos[pos < self.n]]
            rows = rows[rows[:, PAIR_KIND] == _IP]
            np.add.at(self.sums, rows[:, PAIR_KEY], (units - old)[rows[:, PAIR_ACCOUNT]])
        new = pairs[self.n :]
        new = new[new[:, PAIR_KIND] == _IP]
        np.add.at(self.sums, new[:, PAIR_KEY], units[new[:, PAIR_ACCOUNT]])
        self.units = units
        self.n = len(pairs)
        out: np.ndarray = self.sums[:n_keys]
        return out


@dataclass
class Links:
    """The outcome for one window, per account (indexed like the state's accounts)."""

    linked: np.ndarray  # has a pair on a suspicious key while eligible
    kinds: np.ndarray  # (m, len(LINK_KINDS)): such pairs per kind of link
    label: np.ndarray  # component label (scipy's numbering) for members, -1 otherwise


def _grow(a: np.ndarray, n: int, fill: object) -> np.ndarray:
    if len(a) >= n:
        return a
    out = np.full((n, *a.shape[1:]), fill, a.dtype)
    out[: len(a)] = a
    return out


def _dense_unique(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_inverse=True)` for values in [0, n).

    A window that rebuilds a large component brings millions of edges: marking them in an
    array of n flags costs a pass over it instead of a sort of all of them.
    """
    if len(values) * 16 < n:
        ids, inv = np.unique(values, return_inverse=True)
        return ids, inv
    seen = np.zeros(n, bool)
    seen[values] = True
    ids = np.flatnonzero(seen)
    rank = np.zeros(n, np.int64)
    rank[ids] = np.arange(len(ids))
    return ids, rank[values]


def _lowest_member(ids: np.ndarray, part: np.ndarray, n_parts: int) -> np.ndarray:
    """Per node (`ids`, accounts numbered before keys): the lowest id in its part."""
    lowest = np.full(n_parts, np.iinfo(np.int64).max)
    np.minimum.at(lowest, part, ids)
    out: np.ndarray = lowest[part]
    return out


def _lightest(code: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct `code` (ascending): the first position with the lowest `w`, and the code.

    What a lexsort by (code, w) and a pick of each code's first would give, with one sort.
    """
    order = np.argsort(code, kind="stable")
    sc, sw = code[order], w[order]
    start = np.r_[True, sc[1:] != sc[:-1]]
    group = np.cumsum(start) - 1
    lowest = np.flatnonzero(sw == np.minimum.reduceat(sw, np.flatnonzero(start))[group])
    first = lowest[np.r_[True, group[lowest][1:] != group[lowest][:-1]]]
    return order[first], sc[first]


class LinkTracker:
    """Per-account link counts and campaign components, updated incrementally.

    `update` takes the current masks (suspicious keys, eligible accounts) and a rule for which
    accounts join; it folds in the pairs appended since the last call and the pairs of keys
    and accounts whose mask changed. Components only grow while no pair leaves the campaign
    graph; when one does, they are recomputed from all the graph's pairs.
    """

    def __init__(self) -> None:
        self.by_key = PairIndex(PAIR_KEY)
        self.by_acct = PairIndex(PAIR_ACCOUNT)
        self.n = 0
        self.sus = np.zeros(0, bool)
        self.elig = np.zeros(0, bool)
        self.joined = np.zeros(0, bool)
        self.kinds = np.zeros((0, len(LINK_KINDS)), np.int64)
        # Component of each account and key in the campaign graph, named by its lowest account
        # (every component has one: each pair joins an account to a key); -1 outside it.
        self.comp = np.zeros(0, np.int64)
        self.key_comp = np.zeros(0, np.int64)
        # A spanning forest of the graph (account, key sid per tree edge): while no node that
        # holds a tree together leaves, the components stay as they are.
        self.forest = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.rebuilds = 0
        self.churn = AddressChurn()

    def counts(self, pairs: np.ndarray, sus: np.ndarray, elig: np.ndarray) -> np.ndarray:
        """Fold in new pairs and changed masks; return the per-account counts by kind."""
        m, k = len(elig), len(sus)
        self.sus = _grow(self.sus, k, False)
        self.elig = _grow(self.elig, m, False)
        self.kinds = _grow(self.kinds, m, 0)
        self.joined = _grow(self.joined, m, False)
        self.comp = _grow(self.comp, m, -1)
        self.key_comp = _grow(self.key_comp, k, -1)
        old = np.unique(np.concatenate([  # one sort for both (np.union1d would add two)
            self.by_key.select(pairs, sus != self.sus, ordered=False),
            self.by_acct.select(pairs, elig != self.elig, ordered=False)]))
        old = old[old < self.n]
        rows = pairs[old]
        before = self.sus[rows[:, PAIR_KEY]] & self.elig[rows[:, PAIR_ACCOUNT]]
        after = sus[rows[:, PAIR_KEY]] & elig[rows[:, PAIR_ACCOUNT]]
        new = pairs[self.n :]
        new_on = sus[new[:, PAIR_KEY]] & elig[new[:, PAIR_ACCOUNT]]
        d = after.astype(np.int64) - before
        add_cells(self.kinds, rows[:, PAIR_ACCOUNT], rows[:, PAIR_KIND], d)
        add_cells(self.kinds, new[new_on, PAIR_ACCOUNT], new[new_on, PAIR_KIND], 1)
        self._changed = (rows, before, after, new, new_on)
        self._pairs = pairs
        self.sus, self.elig = sus.copy(), elig.copy()
        self.n = len(pairs)
        return self.kinds

    def components(self, joined: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Labels of the campaign graph: the pairs that count, of the accounts that join.

        Call after `counts`, with the accounts that join as of now and a positive weight per
        key (lower: more likely to stay suspicious, preferred in the spanning forest). Returns
        per account the label scipy's `connected_components` gives over all accounts and keys
        (accounts first), or -1 for accounts without a pair in the graph.
        """
        pairs = self._pairs
        rows, before, after, new, new_on = self._changed
        was = self.joined
        self.joined = joined.copy()
        sus, on = self.sus, self.elig & joined
        comp, key_comp = self.comp, self.key_comp
        # Nodes that leave the graph lose all their pairs at once: a key that stopped being
        # suspicious, an account that stopped counting. Pairs only ever leave that way.
        gone_k = (key_comp >= 0) & ~sus
        gone_a = (comp >= 0) & ~on
        dirty = np.zeros(len(comp), bool)  # components (by name) to recompute from their pairs
        came = joined & ~was  # accounts whose pairs all go in
        alone_k = np.zeros(len(key_comp), bool)  # keys whose pairs all go in
        if gone_k.any() or gone_a.any():
            fa, fk = self.forest
            deg_a = np.bincount(fa, minlength=len(comp))
            deg_k = np.bincount(fk, minlength=len(key_comp))
            # Removing a node that holds its spanning tree together (two or more tree edges),
            # or the account that names its component, may split or rename the component.
            dirty[key_comp[gone_k & (deg_k >= 2)]] = True
            dirty[comp[gone_a & (deg_a >= 2)]] = True
            named = np.flatnonzero(gone_a)
            dirty[named[comp[named] == named]] = True
            # Other removed nodes are leaves of the forest: drop them and their tree edge.
            keep = ~(gone_k[fk] | gone_a[fa])
            fa, fk = fa[keep], fk[keep]
            key_comp[gone_k] = -1
            comp[gone_a] = -1
            # A neighbour left without tree edges is taken out, its remaining pairs added again.
            alone = (comp >= 0) & (np.bincount(fa, minlength=len(comp)) == 0)
            comp[alone] = -1
            alone_k = (key_comp >= 0) & (np.bincount(fk, minlength=len(key_comp)) == 0)
            key_comp[alone_k] = -1
            came |= alone
            self.forest = (fa, fk)
        parts = [rows[after & ~before & joined[rows[:, PAIR_ACCOUNT]]], new[new_on & joined[new[:, PAIR_ACCOUNT]]]]
        if dirty.any():
            self.rebuilds += 1
            redo = (comp >= 0) & dirty[np.maximum(comp, 0)]
            # The pieces re-join through pairs with an end outside each one's largest piece
            # (which its tree holds together): only those are added again.
            # (A key that lost its tree edges above may tie two pieces: its pairs go in too.)
            loose_a, loose_k = self._split(redo, (key_comp >= 0) & dirty[np.maximum(key_comp, 0)])
            came |= loose_a
            alone_k |= loose_k
        if alone_k.any():
            at = self.by_key.select(pairs, alone_k, ordered=False)
            at = at[sus[pairs[at, PAIR_KEY]] & on[pairs[at, PAIR_ACCOUNT]]]
            parts.append(pairs[at])
        if came.any():
            at = self.by_acct.select(pairs, came, ordered=False)
            at = at[sus[pairs[at, PAIR_KEY]] & on[pairs[at, PAIR_ACCOUNT]]]
            parts.append(pairs[at])
        edges = np.concatenate(parts)
        if len(edges):
            self._union(edges[:, PAIR_ACCOUNT], edges[:, PAIR_KEY], weight)
        return self._labels()

    def _split(self, accts: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relabel the nodes of components that may have split by what is left of their
        spanning trees: each remaining tree is a piece named by its lowest account, a node
        with no tree edge left is outside the graph.

        Returns the accounts and keys (masks) outside their old component's largest piece:
        the pieces can only join again through a pair with such an end.
        """
        comp, key_comp = self.comp, self.key_comp
        m = len(comp)
        acct_idx, key_idx = np.flatnonzero(accts), np.flatnonzero(keys)
        old = np.concatenate([comp[acct_idx], key_comp[key_idx]])
        fa, fk = self.forest
        inside = accts[fa]
        a, k = fa[inside], fk[inside]
        comp[acct_idx] = -1
        key_comp[key_idx] = -1
        if len(a):
            ids, inv = _dense_unique(np.concatenate([a, m + k]), m + len(key_comp))
            e = len(a)
            q = len(ids)
            tree = coo_matrix((np.ones(e), (inv[:e], inv[e:])), shape=(q, q))
            n_piece, piece = connected_components(tree, directed=False)
            name = _lowest_member(ids, piece, n_piece)  # accounts first: every tree has one
            is_acct = ids < m
            comp[ids[is_acct]] = name[is_acct]
            key_comp[ids[~is_acct] - m] = name[~is_acct]
        # Per old component, its largest piece (nodes; the lowest name on a tie).
        now = np.concatenate([comp[acct_idx], key_comp[key_idx]])
        size = np.bincount(now[now >= 0], minlength=m)
        nodes = np.flatnonzero(now >= 0)
        largest = np.full(m, -1, np.int64)
        if len(nodes):
            was, name = old[nodes], now[nodes]
            order = np.lexsort((name, -size[name], was))
            head = order[np.r_[True, was[order][1:] != was[order][:-1]]]
            largest[was[head]] = name[head]
        loose = now != largest[old]
        loose_a, loose_k = np.zeros(m, bool), np.zeros(len(key_comp), bool)
        loose_a[acct_idx[loose[: len(acct_idx)]]] = True
        loose_k[key_idx[loose[len(acct_idx) :]]] = True
        return loose_a, loose_k

    def _union(self, acct: np.ndarray, sid: np.ndarray, weight: np.ndarray) -> None:
        comp, key_comp = self.comp, self.key_comp
        m = len(comp)
        # Endpoints stand for their components; an account or key outside the graph for itself
        # (keys numbered after all accounts).
        a_id = np.where(comp[acct] >= 0, comp[acct], acct)
        k_id = np.where(key_comp[sid] >= 0, key_comp[sid], m + sid)
        # Most of a window's pairs fall inside one component already: they change nothing.
        across = a_id != k_id
        if not across.any():
            return
        acct, sid, a_id, k_id = acct[across], sid[across], a_id[across], k_id[across]
        ids, inv = _dense_unique(np.concatenate([a_id, k_id]), m + len(key_comp))
        e = len(acct)
        lo, hi = np.minimum(inv[:e], inv[e:]), np.maximum(inv[:e], inv[e:])
        q = len(ids)
        # One edge per pair of components, the lowest weight first; a spanning forest of them.
        w = weight[sid]
        pick, code = _lightest(lo * q + hi, w)
        graph = csr_matrix((w[pick], (lo[pick], hi[pick])), shape=(q, q))
        tree = minimum_spanning_tree(graph).tocoo()
        r, c = tree.row.astype(np.int64), tree.col.astype(np.int64)
        chosen = pick[np.searchsorted(code, np.minimum(r, c) * q + np.maximum(r, c))]
        fa, fk = self.forest
        self.forest = (np.concatenate([fa, acct[chosen]]), np.concatenate([fk, sid[chosen]]))
        n_comp, part = connected_components(graph, directed=False)
        new_id = _lowest_member(ids, part, n_comp)  # an account: every part has one
        is_acct = ids < m
        names, named = ids[is_acct], new_id[is_acct]
        # Components already in the graph that take another name (two met, or a lower account
        # came in) rename their nodes; an account outside it names no node, and accounts
        # arrive in code order, so most windows rename none and skip the pass over all nodes.
        if ((named != names) & (comp[names] >= 0)).any():
            remap = np.arange(m, dtype=np.int64)
            remap[names] = named
            inside = comp >= 0
            comp[inside] = remap[comp[inside]]
            kin = key_comp >= 0
            key_comp[kin] = remap[key_comp[kin]]
        comp[ids[is_acct]] = new_id[is_acct]
        key_comp[ids[~is_acct] - m] = new_id[~is_acct]

    def _labels(self) -> np.ndarray:
        comp = self.comp
        inside = comp >= 0
        label = np.full(len(comp), -1, np.int64)
        if not inside.any():
            return label
        # scipy numbers components by their lowest node, an account outside the graph being a
        # component of its own: lowest - accounts in the graph below it + components below it.
        lowest = np.unique(comp[inside])
        in_below = np.concatenate([[0], np.cumsum(inside)])
        low = comp[inside]
        label[inside] = low - in_below[low] + np.searchsorted(lowest, low)
        return label


class FlaggedOnKeys:
    """Per shared key id, the throttled or blocked accounts on it, kept from one look to the
    next: the pairs of the accounts whose flag changed and the pairs appended since are
    folded in (a campaign's accounts are flagged once and stay so; a pass over every pair
    would read mostly pairs that did not change)."""

    def __init__(self) -> None:
        self.flagged = np.zeros(0, bool)  # per account, as of the last look
        self.on_key = np.zeros(0, np.int64)
        self.n = 0  # shared pairs folded in

    def update(self, pairs: np.ndarray, n_keys: int, flagged: np.ndarray,
               by_acct: PairIndex) -> np.ndarray:
        """The count per shared key id (`n_keys` of them), `flagged` per account (every
        account a pair names); a view, valid until the next update."""
        was = np.zeros(len(flagged), bool)
        k = min(len(flagged), len(self.flagged))
        was[:k] = self.flagged[:k]
        on_key = np.zeros(n_keys, np.int64)
        on_key[: len(self.on_key)] = self.on_key
        changed = was != flagged
        if changed.any():
            at = by_acct.select(pairs, changed, ordered=False)
            rows = pairs[at[at < self.n]]
            np.add.at(on_key, rows[:, PAIR_KEY],
                      np.where(flagged[rows[:, PAIR_ACCOUNT]], 1, -1))
        new = pairs[self.n :]
        on_key += np.bincount(new[flagged[new[:, PAIR_ACCOUNT]], PAIR_KEY], minlength=n_keys)
        self.flagged, self.on_key, self.n = flagged.copy(), on_key, len(pairs)
        return on_key
