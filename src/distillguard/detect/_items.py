"""Items: what a request asks, with its wrapper stripped, and which accounts asked it too.

A request's **item** is its task, not its frame. Frames (an instruction to reason step by step,
a grading rubric, a harness's fixed lines) sit on lines of their own around the task in nearly
every scripted prompt; the task is the longest line. So an item key is a hash of the prompt's
longest line, lower-cased with punctuation folded to spaces (`item_signals`); a line shorter
than `ITEM_MIN_CHARS` is no item (a greeting is not a task). A frame that shares the task's
line makes the key the account's own, never another's: the error leaves an account's items
unshared, which never exempts anyone.

The item's **topic sketch** is a 32-bit hashed bag of its first `TOPIC_WORDS` words: each word
adds +1 or -1 (a bit of its hash) to one of `TOPIC_BITS` buckets (other bits of its hash), and
the sketch keeps each bucket's sign. Summed per account (+1 for a set bit, -1 for a clear
one), it points where the account's tasks point: accounts drawing from one task pool point the
same way, a person with his own tasks elsewhere (the cohort's pool test, `_cohort`).

`ItemBook` keeps, per account, how many distinct items it sent and its topic sums, and, for
the items two or more accounts sent, which accounts sent them (`shared pairs`, in arrival
order). Items only one account sent (a campaign's slice of a pool) cost 12 bytes each in a
sorted codebook and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from distillguard.detect._codebook import SortedRuns

#: A line shorter than this (characters, after folding) is no item.
ITEM_MIN_CHARS = 16
#: Text read per prompt (characters): a task is near the start of any prompt we keep.
ITEM_CHARS = 4000
#: Words of the item that make its topic sketch, and the sketch's buckets (one bit each).
TOPIC_WORDS = 48
TOPIC_BITS = 32
_ITEM_SEED = 17
_WORD_SEED = 23
_SIGN_SHIFT = np.uint64(40)  # the hash bit that gives a word's sign in its bucket
_ACCT_BITS = 24  # shared pair id = item code << 24 | account code (as `_state`)


def item_signals(prompts: pl.Series) -> pl.DataFrame:
    """Per prompt: `item` (u64 hash of its longest line, folded; null when that is shorter
    than `ITEM_MIN_CHARS`) and `topic` (u32 sign sketch of the line's words; 0 with no item)."""
    lines = prompts.fill_null("").str.head(ITEM_CHARS).str.split("\n")
    frame = pl.DataFrame({"lines": lines}).with_columns(
        pl.col("lines").list.eval(pl.element().str.len_bytes()).list.arg_max().alias("at")
    )
    # Only the longest line is folded: lower case, anything but letters and digits a space.
    best = frame.select(
        pl.col("lines")
        .list.get(pl.col("at"), null_on_oob=True)
        .fill_null("")
        .str.to_lowercase()
        .str.replace_all(r"[^a-z0-9]+", " ")
        .str.strip_chars()
        .alias("line")
    )["line"]
    is_item = (best.str.len_chars() >= ITEM_MIN_CHARS).to_numpy()
    # The top bit clear, as the template keys: signed engines read the hash too.
    item = pl.Series("item", best.hash(_ITEM_SEED).to_numpy() >> np.uint64(1), pl.UInt64)
    if not is_item.all():
        item = item.set(pl.Series(~is_item), None)
    topic = np.where(is_item, topic_sketch(best), 0).astype(np.uint32)
    return pl.DataFrame([item, pl.Series("topic", topic, dtype=pl.UInt32)])


def topic_sketch(lines: pl.Series) -> np.ndarray:
    """Per line: the sign of each of `TOPIC_BITS` hashed buckets over its first `TOPIC_WORDS`
    words, packed into a u32 (bit j set: bucket j is positive)."""
    words = lines.str.extract_all(r"(?-u:[a-z]+)").list.head(TOPIC_WORDS)
    lens = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    h = words.explode().drop_nulls().hash(_WORD_SEED).to_numpy()
    row = np.repeat(np.arange(len(lens)), lens)
    sign = np.where((h >> _SIGN_SHIFT) & np.uint64(1), 1.0, -1.0)
    bucket = (h % np.uint64(TOPIC_BITS)).astype(np.int64)
    sums = np.bincount(
        row * TOPIC_BITS + bucket, weights=sign, minlength=len(lens) * TOPIC_BITS
    ).reshape(len(lens), TOPIC_BITS)
    bits = (sums > 0).astype(np.uint64) << np.arange(TOPIC_BITS, dtype=np.uint64)
    out: np.ndarray = bits.sum(axis=1).astype(np.uint32)
    return out


@dataclass
class ItemBatch:
    """What one prepared batch adds, per window `w` (sorted by `w`)."""

    new_w: np.ndarray  # one row per (account, item) pair seen for the first time
    new_acct: np.ndarray
    shared_w: np.ndarray  # one row per pair that joins the shared pairs
    shared_code: np.ndarray
    shared_acct: np.ndarray
    shared_rank: np.ndarray  # the pair's place among its item's senders (0: first)
    topic_w: np.ndarray  # per (window, account): its topic sums over the window's items
    topic_acct: np.ndarray
    topic_sums: np.ndarray  # (rows, TOPIC_BITS)

    def window(self, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(new pair accounts, shared rows (code, account, rank), topic accounts, topic sums)."""
        a, b = np.searchsorted(self.new_w, [w, w + 1])
        c, d = np.searchsorted(self.shared_w, [w, w + 1])
        e, f = np.searchsorted(self.topic_w, [w, w + 1])
        rows = np.column_stack(
            [self.shared_code[c:d], self.shared_acct[c:d], self.shared_rank[c:d]]
        )
        return self.new_acct[a:b], rows, self.topic_acct[e:f], self.topic_sums[e:f]


class ItemBook:
    """Items per account and the accounts that share each item (see the module docstring).

    `prepare` (codebook side, once per batch) and `apply` (per window) split like
    `DetectorState`'s: only `prepare` touches the codebook, only `apply` the arrays a look reads.
    """

    def __init__(self) -> None:
        self._codes = SortedRuns(np.int64)  # item hash -> its dense code
        self._n = 0  # codes handed out
        # Per code (arrays with room to grow; the first `_n` rows are in use): the first
        # account that sent it, whether a second one did, and the shared pairs handed out.
        self._first = np.zeros(0, np.int64)
        self._shared = np.zeros(0, bool)
        self._senders = np.zeros(0, np.int64)
        self._pairs = SortedRuns(None)  # the ids of the shared pairs handed out
        # Look side.
        self.items = np.zeros(0, np.int64)  # per account: distinct items sent
        self.topic = np.zeros((0, TOPIC_BITS), np.int64)  # per account: topic sums
        self.shared_rows = np.zeros(0, np.int64)  # per account: its shared pairs so far
        self._shared_buf = np.zeros((1024, 3), np.int64)  # (code, account, rank), arrival order
        self._shared_n = 0

    def __setstate__(self, saved: dict[str, object]) -> None:
        # A checkpoint written before the codebooks were sorted runs: one run each.
        self.__dict__.update(saved)
        if "_ids" in saved:
            ids = np.asarray(self.__dict__.pop("_ids"))
            self._codes = SortedRuns.of(ids, np.asarray(saved["_codes"]), np.int64)
            self._pairs = SortedRuns.of(np.asarray(saved["_pairs"]), None, None)
            self._n = len(ids)

    def _room(self, n: int) -> None:
        """Per-code arrays long enough for `n` codes (doubling: amortised, not per batch)."""
        if n <= len(self._first):
            return
        cap = max(n, 2 * len(self._first), 1024)

        def grow(a: np.ndarray) -> np.ndarray:
            out = np.zeros(cap, a.dtype)
            out[: len(a)] = a
            return out

        self._first, self._shared, self._senders = (
            grow(self._first), grow(self._shared), grow(self._senders))

    def grow(self, cap: int) -> None:
        """Room for `cap` accounts (called with the state's own growth)."""
        if cap <= len(self.items):
            return
        items = np.zeros(cap, np.int64)
        items[: len(self.items)] = self.items
        topic = np.zeros((cap, TOPIC_BITS), np.int64)
        topic[: len(self.topic)] = self.topic
        rows = np.zeros(cap, np.int64)
        rows[: len(self.shared_rows)] = self.shared_rows
        self.items, self.topic, self.shared_rows = items, topic, rows

    def shared_pairs(self) -> np.ndarray:
        """(item code, account, rank) of every account that sent an item some other account
        sent, in the order they became shared (rank: its place among the item's senders)."""
        return self._shared_buf[: self._shared_n]

    def prepare(
        self, w: np.ndarray, acct: np.ndarray, item: pl.Series, topic: np.ndarray
    ) -> ItemBatch:
        """Fold a time-ordered batch's (window, account, item, topic) into the codebook."""
        has = item.is_not_null().to_numpy()
        w, acct, topic = w[has], acct[has].astype(np.int64), topic[has]
        h = item.filter(pl.Series(has)).to_numpy().astype(np.uint64)
        tw, ta, ts = self._topic_rows(w, acct, topic)
        # Distinct (account, item) pairs in order of first use.
        pairs = pl.DataFrame({"w": w, "acct": acct, "h": h}).unique(
            ["acct", "h"], keep="first", maintain_order=True
        )
        pw, pa, ph = (pairs[c].to_numpy() for c in ("w", "acct", "h"))
        code = self._codes.get(ph, default=-1)
        known = code >= 0
        before = self._n
        if not known.all():
            new_h, first_at, inverse = np.unique(ph[~known], return_index=True,
                                                 return_inverse=True)  # sorted hashes
            order = np.argsort(first_at)  # codes in order of first appearance
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            self._codes.add(new_h, before + rank)
            self._n = before + len(new_h)
            self._room(self._n)
            self._first[before + rank] = pa[~known][first_at]
            code[~known] = before + rank[inverse.reshape(-1)]
        is_first = pa == self._first[code]
        # A new pair: the first sender's pair of a new item, or another sender's pair the
        # codebook has not handed out yet.
        pid = (code.astype(np.uint64) << np.uint64(_ACCT_BITS)) | pa.astype(np.uint64)
        other = ~is_first & ~self._has_pair(pid)
        new_pair = (is_first & (code >= before)) | other
        # An item becomes shared at its first other sender: its first sender joins then too.
        sw, sc, sa = pw[other], code[other], pa[other]
        becomes = other & ~self._shared[code]
        bc, at_first = np.unique(code[becomes], return_index=True)
        fw = pw[becomes][at_first]
        self._shared[bc] = True
        # The first sender joins ahead of the others (its rank among the senders is 0).
        sw = np.concatenate([fw, sw])
        sc = np.concatenate([bc, sc])
        sa = np.concatenate([self._first[bc], sa])
        keep = np.argsort(sw, kind="stable")
        sw, sc, sa = sw[keep], sc[keep], sa[keep]
        add = (sc.astype(np.uint64) << np.uint64(_ACCT_BITS)) | sa.astype(np.uint64)
        self._pairs.add(add)  # (none held yet: see `other` and `becomes`)
        rank = self._rank(sc)
        nw, na = pw[new_pair], pa[new_pair]
        keep = np.argsort(nw, kind="stable")
        return ItemBatch(nw[keep], na[keep], sw, sc, sa, rank, tw, ta, ts)

    def _rank(self, code: np.ndarray) -> np.ndarray:
        """Each new shared pair's place among its item's senders (pairs in arrival order)."""
        order = np.argsort(code, kind="stable")
        sc = code[order]
        idx = np.arange(len(sc))
        start = np.r_[True, sc[1:] != sc[:-1]] if len(sc) else np.zeros(0, bool)
        within = idx - np.maximum.accumulate(np.where(start, idx, 0)) if len(sc) else idx
        rank = np.empty(len(code), np.int64)
        rank[order] = self._senders[sc] + within
        np.add.at(self._senders, code, 1)
        return rank

    def first_senders(self, item: np.ndarray) -> np.ndarray:
        """Per item hash: the account that sent it first (-1: not seen); codebook side (the
        prepare thread, after `prepare` of the batch that holds it)."""
        code = self._codes.get(np.asarray(item, np.uint64), default=-1)
        out: np.ndarray = np.where(code >= 0, self._first[np.maximum(code, 0)], -1)
        return out

    def _has_pair(self, pid: np.ndarray) -> np.ndarray:
        return self._pairs.contains(pid)

    @staticmethod
    def _topic_rows(
        w: np.ndarray, acct: np.ndarray, topic: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Topic sums per (window, account), sorted by window."""
        if not len(w):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, TOPIC_BITS))
        # Sorted by (window, account); each bit's set count per group, one pass per bit.
        order = np.lexsort((acct, w))
        sw, sa, st = w[order], acct[order], topic[order].astype(np.uint32)
        start = np.flatnonzero(np.r_[True, (sw[1:] != sw[:-1]) | (sa[1:] != sa[:-1])])
        size = np.diff(np.r_[start, len(sw)])
        sums = np.empty((len(start), TOPIC_BITS), np.int64)
        for j in range(TOPIC_BITS):
            ones = np.add.reduceat(((st >> np.uint32(j)) & np.uint32(1)).astype(np.int64), start)
            sums[:, j] = 2 * ones - size
        return sw[start], sa[start], sums

    def apply(self, batch: ItemBatch, w: int) -> None:
        """Fold window `w` of a prepared batch in."""
        new_acct, rows, t_acct, t_sums = batch.window(w)
        np.add.at(self.items, new_acct, 1)
        if len(t_acct):
            for j in range(TOPIC_BITS):
                np.add.at(self.topic[:, j], t_acct, t_sums[:, j])
        if len(rows):
            need = self._shared_n + len(rows)
            if need > len(self._shared_buf):
                buf = np.zeros((max(need, 2 * len(self._shared_buf)), 3), np.int64)
                buf[: self._shared_n] = self._shared_buf[: self._shared_n]
                self._shared_buf = buf
            self._shared_buf[self._shared_n : need] = rows
            self._shared_n = need
            np.add.at(self.shared_rows, rows[:, 1], 1)


def best_overlap(
    shared: np.ndarray, items: np.ndarray, who: np.ndarray, max_partners: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per account in `who`: the items it shares with its closest other account, and that
    count over the larger of the two accounts' distinct items (two-sided: a small slice inside
    a big benchmark run is not "the same items").

    Args:
        shared: (item code, account, rank) rows of the shared pairs (`ItemBook.shared_pairs`).
        items: per account, its distinct items.
        who: the accounts to look at (sorted indices).
        max_partners: per item, only its first this many senders are read as partners (a
            bound on the work for items thousands of accounts sent).

    Returns:
        (overlap share, items shared) per account of `who`, 0 where none.
    """
    share = np.zeros(len(who), np.float64)
    count = np.zeros(len(who), np.int64)
    if not len(who) or not len(shared):
        return share, count
    code, acct, rank = shared[:, 0], shared[:, 1], shared[:, 2]
    # Membership by lookup tables (a gather per row), not by sorting the rows.
    asked = np.zeros(max(int(acct.max()), int(who.max())) + 1, bool)
    asked[who] = True
    mine = asked[acct]
    if not mine.any():
        return share, count
    mc, ma = code[mine], acct[mine]
    theirs = np.zeros(int(code.max()) + 1, bool)
    theirs[mc] = True
    partner = (rank < max_partners) & theirs[code]
    order = np.argsort(code[partner], kind="stable")
    pc, pb = code[partner][order], acct[partner][order]
    lo, hi = np.searchsorted(pc, mc, "left"), np.searchsorted(pc, mc, "right")
    reps = hi - lo
    # Every (account of `who`, partner) pair on each of its shared items.
    at = np.repeat(lo - np.cumsum(np.r_[0, reps[:-1]]), reps) + np.arange(reps.sum())
    a, b = np.repeat(ma, reps), pb[at]
    keep = a != b
    pair, n = np.unique((a[keep] << 32) | b[keep], return_counts=True)
    if not len(pair):
        return share, count
    pa, pbb = pair >> 32, pair & 0xFFFFFFFF
    ratio = n / np.maximum(np.maximum(items[pa], items[pbb]), 1)
    best = np.lexsort((-ratio, pa))  # per account, its closest partner first
    first = best[np.r_[True, pa[best][1:] != pa[best][:-1]]]
    where = np.searchsorted(who, pa[first])
    share[where] = ratio[first]
    count[where] = n[first]
    return share, count


def pool_similarity(
    topic: np.ndarray, population: np.ndarray, group: np.ndarray, label: np.ndarray
) -> np.ndarray:
    """Per account of `group`: cosine of its topic direction with the mean direction of the
    other accounts of its `label`, both centred on the `population`'s mean direction (common
    words point everywhere; what is left is what a pool asks about).

    Args:
        topic: (accounts, TOPIC_BITS) topic sums.
        population: bool per account: the accounts whose mean is subtracted.
        group: bool per account: the accounts to score.
        label: per account, its group (a cohort); compared within a label only.

    Returns:
        per account, the similarity (0 outside `group`, or alone in its label).
    """
    out = np.zeros(len(topic), np.float64)
    if not group.any():
        return out
    rows = np.flatnonzero(population | group)  # only these rows are read
    v = _unit(topic[rows].astype(np.float32))
    pop = population[rows]
    centred = _unit(v - v[pop].mean(axis=0)) if pop.any() else v
    inner = group[rows]
    c, lab = centred[inner], label[rows[inner]]
    others = np.empty_like(c)
    for one in np.unique(lab):
        at = lab == one
        others[at] = c[at].sum(axis=0) - c[at]  # leave-one-out: an account is not its own pool
    norm = np.sqrt(np.einsum("ij,ij->i", others, others))
    dot = np.einsum("ij,ij->i", c, others)
    out[rows[inner]] = np.where(norm > 0, dot / np.maximum(norm, 1e-12), 0.0)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]
    out: np.ndarray = v / np.maximum(n, 1e-12)
    return out
