"""The prompt cache across batches: cached signals are the computed ones, texts decide, not keys."""

from __future__ import annotations

import polars as pl
import pytest

from distillguard.detect import _signatures, _text_cache
from distillguard.detect._text_cache import TextCache

from .builders import event_table, events

_PROMPTS = [
    "Solve step by step: what is 12 times 7? Show your work.",
    "Write a Python function that reverses a list.",
    "what should i cook tonight with leftover rice",
    "Grade the response below using this rubric: accuracy, clarity.",
    "",
    "Translate 'good morning' into French, please.",
]


def _batch(picks: list[int], k: int) -> pl.DataFrame:
    rows = []
    for i, p in enumerate(picks):
        rows += events(f"a{k}-{i}", 1, prompt=_PROMPTS[p])
    frame = pl.from_arrow(event_table(rows))
    assert isinstance(frame, pl.DataFrame)
    return frame


_BATCHES = [[0, 1, 2, 0], [1, 3, 4, 1], [0, 5, 2], [3, 3, 4, 5, 0]]


@pytest.mark.parametrize("max_bytes", [1, 100, 10**6])
def test_cached_signals_equal_computed_ones(max_bytes: int) -> None:
    """Batch after batch (generations rolled over after every store with 1 byte, kept with
    1 MB), the cached path gives `event_signals`' rows, and repeated prompts are hits."""
    cache = TextCache(max_bytes)
    for k, picks in enumerate(_BATCHES):
        frame = _batch(picks, k)
        assert _signatures.event_signals(frame, cache).equals(_signatures.event_signals(frame))
    assert cache.hits > 0
    if max_bytes == 10**6:  # every distinct prompt computed once, in all batches
        assert cache.misses == len(_PROMPTS)


def test_a_key_shared_by_other_texts_never_hands_their_signals(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text hashing to one key: each still gets its own signals (the stored text is
    compared), and only equal texts are hits."""
    monkeypatch.setattr(_text_cache, "_key", lambda columns, seed: pl.lit(seed, pl.UInt64))
    cache = TextCache()
    for k, picks in enumerate(_BATCHES):
        frame = _batch(picks, k)
        assert _signatures.event_signals(frame, cache).equals(_signatures.event_signals(frame))
    # Only the first text stored under the one key is ever found again.
    assert cache.hits == sum(_BATCHES[0][0] in picks for picks in _BATCHES[1:])


def test_rows_keep_order_and_values_of_the_function() -> None:
    cache = TextCache()
    texts = pl.DataFrame({"prompt": ["b", "a", None, "c"]})

    def length(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(pl.col("prompt").str.len_bytes().alias("n"))

    assert cache.rows(texts, length).equals(length(texts))
    again = pl.DataFrame({"prompt": ["c", "d", None, "a", "a"]})
    assert cache.rows(again, length).equals(length(again))
    assert (cache.hits, cache.misses) == (4, 5)


def test_a_cache_needs_room() -> None:
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        TextCache(0)
