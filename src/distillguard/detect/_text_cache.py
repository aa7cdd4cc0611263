"""Signals of texts already seen in earlier batches, kept for the next ones (bounded memory).

`event_signals` works once per distinct prompt within a batch; across batches the same prompts
come back (templates, benchmark sets, retries, a campaign's task pool worked through for days).
A `TextCache` keeps each computed row beside its text and hands it back when the text returns.

Rows are found by a 128-bit key (two polars hashes of the text, different seeds) and then
*checked against the stored text*: a hit whose text differs (a key collision, chance or
crafted) is computed afresh and never stored, so a cached row is always the row computed for
that very text, and a cached signal equals a computed one whatever the hash function. The key
only decides where to look; the text comparison decides what is returned.

Memory is bounded by the texts' bytes: rows go into the current generation, and once it holds
`TEXT_CACHE_BYTES` of text it becomes the previous one and the one before is dropped (at most
about twice the bound held). A hit in the previous generation is copied into the current one,
so a text still in use outlives the generation it was first stored in.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

#: Text bytes one generation of a `TextCache` holds before it is rolled over (two are kept).
#: Prompts average under 1 KB: 64 MiB keeps about 100,000 of them a generation, which on a
#: simulated 1M-event log finds 90% of the repeats an unbounded cache would.
TEXT_CACHE_BYTES = 64 * 2**20

_SEEDS = (0x5D1B_7A3C, 0x2F6E_91B4)
_K1, _K2, _ROW, _BYTES = "_cache_k1", "_cache_k2", "_cache_row", "_cache_bytes"

Signals = Callable[[pl.DataFrame], pl.DataFrame]


class TextCache:
    """`fn`'s rows of texts (a frame of text columns) kept across calls: `rows(texts, fn)`.

    One cache serves one function over one set of columns; it is not shared between threads.
    """

    def __init__(self, max_bytes: int = TEXT_CACHE_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"TextCache: max_bytes must be positive (got {max_bytes})")
        self.max_bytes = max_bytes
        self._current: list[pl.DataFrame] = []
        self._previous: pl.DataFrame | None = None
        self._bytes = 0
        self._layout: list[str] | None = None  # stored columns: the key, texts, signals
        self.hits = 0
        self.misses = 0

    def rows(self, texts: pl.DataFrame, fn: Signals) -> pl.DataFrame:
        """`fn(texts)`: rows of texts seen before come from the cache, the others from `fn`
        (and are stored). Same rows, same order, same values as `fn(texts)` itself."""
        columns = texts.columns
        keyed = texts.with_columns(
            _key(columns, _SEEDS[0]).alias(_K1),
            _key(columns, _SEEDS[1]).alias(_K2),
            pl.int_range(pl.len(), dtype=pl.Int64).alias(_ROW),
        )
        found, collided = self._look_up(keyed, columns)
        self.hits += found.height
        self.misses += keyed.height - found.height
        if not found.height:
            out = fn(texts)
            self._store(keyed, out, collided, columns)
            return out
        signals = [c for c in found.columns if c not in (_K1, _K2, _ROW, *columns)]
        if self._previous is not None:  # still in use: kept into the current generation
            self._promote(found.join(self._previous.select(_K1, _K2), on=[_K1, _K2],
                                     how="semi").drop(_ROW), columns)
        if found.height == keyed.height:
            return found.sort(_ROW).select(signals)
        missing = keyed.join(found.select(_ROW), on=_ROW, how="anti")
        computed = fn(missing.select(columns))
        self._store(missing, computed, collided, columns)
        return (pl.concat([found.select(_ROW, *signals),
                           computed.select(signals).with_columns(missing[_ROW])
                           .select(_ROW, *signals)], how="vertical")
                .sort(_ROW).drop(_ROW))

    def _look_up(self, keyed: pl.DataFrame,
                 columns: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The stored rows whose key and texts match (`_ROW`, the key, texts and signals; one
        per row), and the `_ROW`s whose key is stored under other texts."""
        stored = [*self._current, *([self._previous] if self._previous is not None else [])]
        if not stored:
            return keyed.clear(), keyed.clear().select(_ROW)
        cached = {c: f"_cached_{c}" for c in columns}
        match = keyed.join(pl.concat(stored, how="vertical").rename(cached), on=[_K1, _K2],
                           how="inner")
        same = pl.lit(True)
        for c, kept in cached.items():
            same = same & pl.col(c).eq_missing(pl.col(kept))
        match = match.with_columns(same.alias("_same"))
        found = (match.filter("_same").unique(_ROW, keep="first", maintain_order=True)
                 .drop("_same", *cached.values()))
        collided = match.filter(~pl.col("_same")).select(_ROW)
        return found, collided

    def _store(self, keyed: pl.DataFrame, computed: pl.DataFrame, collided: pl.DataFrame,
               columns: list[str]) -> None:
        """Keep `computed` (the rows of `keyed`, in order) but for collided keys: a key stays
        with the texts first stored under it."""
        rows = pl.concat([keyed.select(_K1, _K2, _ROW, *columns), computed], how="horizontal")
        if collided.height:
            rows = rows.join(collided, on=_ROW, how="anti")
        self._promote(rows.drop(_ROW), columns)

    def _promote(self, rows: pl.DataFrame, columns: list[str]) -> None:
        """Add rows (key, texts, signals) not in the current generation to it; roll over once
        it holds `max_bytes` of text."""
        if self._layout is None:
            self._layout = rows.columns
        rows = rows.select(self._layout)
        if self._current:
            rows = rows.join(pl.concat([k.select(_K1, _K2) for k in self._current]),
                             on=[_K1, _K2], how="anti")
        rows = rows.unique([_K1, _K2], keep="first", maintain_order=True)
        if not rows.height:
            return
        self._current.append(rows)
        self._bytes += sum(int(rows[c].cast(pl.String).str.len_bytes().fill_null(0).sum())
                           for c in columns)
        if self._bytes >= self.max_bytes:
            self._previous = pl.concat(self._current, how="vertical").rechunk()
            self._current = []
            self._bytes = 0


def _key(columns: list[str], seed: int) -> pl.Expr:
    key = pl.lit(0, pl.UInt64)
    for i, c in enumerate(columns):
        key = key ^ pl.col(c).hash(seed + i)
    return key
