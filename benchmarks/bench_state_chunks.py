"""The state's codebooks per chunk of the replay: sorted runs against the code they replace.

    python benchmarks/bench_state_chunks.py --log /work/dg-bench/log-1000000 --chunk-events 50000

Computes the log's signals once, then folds them into a `DetectorState` chunk by chunk
(`prepare`, `admit`, `apply` of every window; no decisions), as the replay does. At every
chunk the three codebook steps run twice in this process on the same input, which first
alternating from chunk to chunk: as they are (`SortedRuns`, `_codebook`) and as they were (the
code below: one sorted array per codebook, new ids put in with `np.insert`, the item pairs'
union by `np.union1d`, the keys' codes by joins against a table of every key known), on a
codebook of their own. Both must give the same output at every chunk; it prints the CPU seconds
of each (`time.process_time`: polars's threads count too, and nothing else runs meanwhile),
their ratio, and the cost of the last tenth of the chunks against the first tenth (a step whose
work grows with the state gets dearer chunk by chunk; one that depends on the chunk does not).

Small chunks on a small log stand for big chunks on a big one: what matters is how many
chunks came before (the 10M scan runs 20 chunks of 500,000 events; the 1M log in chunks of
50,000 does too).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from _against import in_turn
from _docs import markdown_table, write_section

from distillguard.detect import _items, _state
from distillguard.detect._items import ItemBatch, ItemBook
from distillguard.detect._state import DetectorState
from distillguard.detect._stream import compute_signals, memory_chunks
from distillguard.traffic import TrafficLog

_ACCT_BITS = np.uint64(24)


class OldPairs:
    """The (account, key) pair totals as one sorted array each (as they were)."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.uint64)
        self.totals = np.zeros(0, np.int32)

    def running_totals(self, pairs: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
        pair = (pairs["code"].to_numpy().astype(np.uint64) << _ACCT_BITS) | pairs[
            "acct"].to_numpy().astype(np.uint64)
        c = pairs["c"].to_numpy().astype(np.int64)
        order = np.argsort(pair, kind="stable")
        sp, sc = pair[order], c[order]
        start = np.r_[True, sp[1:] != sp[:-1]] if len(sp) else np.zeros(0, bool)
        seg = np.cumsum(start) - 1
        heads = sp[start]
        ids, totals = self.ids, self.totals
        at = np.minimum(np.searchsorted(ids, heads), max(len(ids) - 1, 0))
        found = ids[at] == heads if len(ids) else np.zeros(len(heads), bool)
        prior = np.where(found, totals[at] if len(ids) else 0, 0)
        cs = np.cumsum(sc)
        before = (cs - sc)[start]
        cum = np.empty(len(pair), np.int64)
        cum[order] = prior[seg] + cs - before[seg]
        is_new = np.zeros(len(pair), bool)
        is_new[order] = start & ~found[seg]
        seg_total = prior + np.add.reduceat(sc, np.flatnonzero(start)) if len(sc) else prior
        totals[at[found]] = seg_total[found]
        fresh = ~found
        where = np.searchsorted(ids, heads[fresh])
        del ids, totals
        self.ids = np.insert(self.ids, where, heads[fresh])
        self.totals = np.insert(self.totals, where, seg_total[fresh])
        return _state_frames(pairs, cum, is_new)


def _state_frames(pairs: pl.DataFrame, cum: np.ndarray, is_new: np.ndarray) -> tuple[pl.DataFrame, ...]:
    """The four outputs of `_running_totals` from the running counts (unchanged code)."""
    pairs = pairs.with_columns(pl.Series("cum", cum), pl.Series("is_new", is_new))
    tid, eid = _state._TEMPLATE_IDS, _state._EDGE_IDS
    return (
        pairs.filter("is_new").select("w", "kind", "code", "acct", "first_ts"),
        pairs.filter(pl.col("kind").is_in(tid)).group_by("w", "acct", maintain_order=True)
        .agg(pl.col("cum").max().alias("top")),
        pairs.filter(pl.col("kind").is_in(tid) & (pl.col("cum") >= _state.HEAVY_PAIR_EVENTS))
        .select("w", "code", "acct", "cum"),
        pairs.filter(pl.col("kind").is_in(eid)).select("w", "kind", "code", "acct", "cum"),
    )


class OldKeys:
    """The key codebook as one table joined against every key known (as it was)."""

    def __init__(self) -> None:
        self.keys = pl.DataFrame(schema={"kind": pl.Int8, "key": pl.UInt64, "code": pl.Int64})
        self.codes = 0

    def encode(self, pairs: pl.DataFrame, sig: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
        seen = pairs.select("kind", "key", "label", "row", "first_ts").unique(
            ["kind", "key"], keep="first", maintain_order=True)
        new = seen.join(self.keys, on=["kind", "key"], how="anti", maintain_order="left")
        rows = new["row"].fill_null(0)
        new = new.with_columns(
            pl.when(pl.col("label").is_not_null()).then(pl.col("label"))
            .when(pl.col("kind") == _state._KIND_ID["ip"]).then(sig["ip"].gather(rows))
            .otherwise(sig["event_id"].gather(rows)).alias("label")
        ) if new.height else new
        new = new.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + self.codes).alias("code"))
        if new.height:
            self.keys = pl.concat([self.keys, new.select("kind", "key", "code")])
            self.codes += new.height
        coded = pairs.join(self.keys, on=["kind", "key"], how="left", maintain_order="left")
        return coded, new.select("kind", "code", "label", "first_ts", "key")


class OldItemBook(ItemBook):
    """The item codebooks as sorted arrays grown by `np.insert` and `np.union1d` (as they were)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = np.zeros(0, np.uint64)
        self.codes = np.zeros(0, np.int64)
        self._first = np.zeros(0, np.int64)
        self._shared = np.zeros(0, bool)
        self.pair_ids = np.zeros(0, np.uint64)
        self._senders = np.zeros(0, np.int64)

    def _code_of(self, h: np.ndarray) -> np.ndarray:
        if not len(self.ids):
            return np.full(len(h), -1, np.int64)
        at = np.minimum(np.searchsorted(self.ids, h), len(self.ids) - 1)
        out: np.ndarray = np.where(self.ids[at] == h, self.codes[at], -1)
        return out

    def _has_pair(self, pid: np.ndarray) -> np.ndarray:
        if not len(self.pair_ids):
            return np.zeros(len(pid), bool)
        at = np.minimum(np.searchsorted(self.pair_ids, pid), len(self.pair_ids) - 1)
        out: np.ndarray = self.pair_ids[at] == pid
        return out

    def prepare(self, w: np.ndarray, acct: np.ndarray, item: pl.Series,
                topic: np.ndarray) -> ItemBatch:
        has = item.is_not_null().to_numpy()
        w, acct, topic = w[has], acct[has].astype(np.int64), topic[has]
        h = item.filter(pl.Series(has)).to_numpy().astype(np.uint64)
        tw, ta, ts = self._topic_rows(w, acct, topic)
        pairs = pl.DataFrame({"w": w, "acct": acct, "h": h}).unique(
            ["acct", "h"], keep="first", maintain_order=True)
        pw, pa, ph = (pairs[c].to_numpy() for c in ("w", "acct", "h"))
        code = self._code_of(ph)
        known = code >= 0
        before = len(self._first)
        if not known.all():
            new_h, first_at = np.unique(ph[~known], return_index=True)
            order = np.argsort(first_at)
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            at = np.searchsorted(self.ids, new_h)
            self.ids = np.insert(self.ids, at, new_h)
            self.codes = np.insert(self.codes, at, before + rank)
            self._first = np.concatenate([self._first, pa[~known][first_at[order]]])
            self._shared = np.concatenate([self._shared, np.zeros(len(new_h), bool)])
            self._senders = np.concatenate([self._senders, np.zeros(len(new_h), np.int64)])
            code = self._code_of(ph)
        is_first = pa == self._first[code]
        pid = (code.astype(np.uint64) << _ACCT_BITS) | pa.astype(np.uint64)
        other = ~is_first & ~self._has_pair(pid)
        new_pair = (is_first & (code >= before)) | other
        sw, sc, sa = pw[other], code[other], pa[other]
        becomes = other & ~self._shared[code]
        bc, at_first = np.unique(code[becomes], return_index=True)
        fw = pw[becomes][at_first]
        self._shared[bc] = True
        sw = np.concatenate([fw, sw])
        sc = np.concatenate([bc, sc])
        sa = np.concatenate([self._first[bc], sa])
        keep = np.argsort(sw, kind="stable")
        sw, sc, sa = sw[keep], sc[keep], sa[keep]
        add = (sc.astype(np.uint64) << _ACCT_BITS) | sa.astype(np.uint64)
        self.pair_ids = np.union1d(self.pair_ids, add)
        rank = self._rank(sc)
        nw, na = pw[new_pair], pa[new_pair]
        keep = np.argsort(nw, kind="stable")
        return ItemBatch(nw[keep], na[keep], sw, sc, sa, rank, tw, ta, ts)


class Step:
    """One codebook step: CPU seconds per chunk, new and old."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.new: list[float] = []
        self.old: list[float] = []

    def both(self, new: Callable[[], Any], old: Callable[[], Any],
             same: Callable[[Any, Any], bool]) -> Any:
        """The new path's output; both run, which first alternating from chunk to chunk."""
        call = len(self.new)
        runs, out = {"new": new, "old": old}, {}
        for path in in_turn(list(runs), call):
            start = time.process_time()
            out[path] = runs[path]()
            getattr(self, path).append(time.process_time() - start)
        if not same(out["new"], out["old"]):
            raise AssertionError(f"{self.name}: call {call} differs from the old code path")
        return out["new"]


def _frames_equal(a: tuple[pl.DataFrame, ...], b: tuple[pl.DataFrame, ...]) -> bool:
    return all(x.equals(y) for x, y in zip(a, b, strict=True))


def _batches_equal(a: ItemBatch, b: ItemBatch) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", type=Path, required=True, help="a traffic log directory")
    p.add_argument("--chunk-events", type=int, default=50_000)
    p.add_argument("--signals", type=Path,
                   help="a Parquet file of the log's signals: read if it exists, else written")
    args = p.parse_args()
    log = TrafficLog(args.log)
    if args.signals is not None and args.signals.exists():
        sig = pl.read_parquet(args.signals)
    else:
        sig = compute_signals(args.log)
        if args.signals is not None:
            sig.write_parquet(args.signals)
    state = DetectorState(accounts=pl.from_arrow(log.read("accounts")),  # type: ignore[arg-type]
                          models=pl.from_arrow(log.read("models")))  # type: ignore[arg-type]
    step = 15 * 60_000_000
    source = memory_chunks(sig, step, args.chunk_events)
    totals, items = Step("pair totals"), Step("item codebooks")
    old_pairs, old_items = OldPairs(), OldItemBook()
    real_totals, real_items = DetectorState._running_totals, ItemBook.prepare
    real_keys = DetectorState._encode_keys
    keys, old_keys = Step("key codebooks"), OldKeys()

    def encode_keys(self: DetectorState, pairs: pl.DataFrame, sig: pl.DataFrame) -> Any:
        return keys.both(lambda: real_keys(self, pairs, sig), lambda: old_keys.encode(pairs, sig),
                         lambda a, b: _frames_equal(a[:2], b))

    def running_totals(self: DetectorState, pairs: pl.DataFrame) -> Any:
        return totals.both(lambda: real_totals(self, pairs),
                           lambda: old_pairs.running_totals(pairs), _frames_equal)

    def item_prepare(self: ItemBook, *a: Any) -> Any:
        return items.both(lambda: real_items(self, *a), lambda: old_items.prepare(*a),
                          _batches_equal)

    DetectorState._running_totals = running_totals  # type: ignore[method-assign]
    _items.ItemBook.prepare = item_prepare  # type: ignore[method-assign]
    DetectorState._encode_keys = encode_keys  # type: ignore[method-assign]
    start = time.perf_counter()
    for chunk in source.chunks:
        prep = state.prepare(chunk, step, source.origin)
        state.admit(prep)
        for w in prep.windows.tolist():
            state.apply(prep, w)
    wall = time.perf_counter() - start
    n = len(totals.new)
    tenth = max(1, n // 10)
    rows = []
    for s in (keys, totals, items):
        new, old = sum(s.new), sum(s.old)

        def growth(v: list[float]) -> str:
            return f"{sum(v[-tenth:]) / max(sum(v[:tenth]), 1e-9):.1f}x"

        rows.append([s.name, f"{old:.2f}", f"{new:.2f}", f"{old / max(new, 1e-9):.1f}x",
                     growth(s.old), growth(s.new)])
    table = markdown_table(["codebook step", "as it was (CPU s)", "sorted runs (CPU s)", "ratio",
                            "last / first tenth, as it was", "last / first tenth, sorted runs"],
                           rows)
    body = (f"{state.events_seen:,} events ({args.log.name}) in {n} chunks of about "
            f"{args.chunk_events:,}; at the end {len(state._pair_totals):,} (account, key) "
            f"pairs, {state._key_codes:,} keys, {state.items._n:,} items, "
            f"{len(state.items._pairs):,} shared item pairs. Both code paths gave the same "
            f"output at every chunk.\n\n{table}\n")
    print(body)
    print(f"{wall:.0f} s wall, load average {os.getloadavg()[0]:.1f} (shared machine)")
    write_section(__file__, "The state's codebooks per replay chunk", body)


if __name__ == "__main__":
    main()
