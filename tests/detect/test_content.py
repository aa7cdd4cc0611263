"""The content model: trained on the shipped corpora, it reads the task, not the wrapper."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from distillguard._errors import ConfigError
from distillguard.detect._content import (
    MAX_CHARS,
    N_FEATURES,
    content_model,
    featurize,
    read_corpora,
)
from distillguard.detect._signatures import event_signals

from .builders import HUMAN_PROMPTS, event_table, events

MATHS = [
    "A baker sells 48 muffins in the morning and half as many in the afternoon. How many "
    "muffins does she sell in total?",
    "Tom has 3 times as many marbles as Jerry. Together they have 64 marbles. How many "
    "marbles does Jerry have?",
    "Janet buys 3 boxes of pencils with 12 pencils in each box. She gives away 15 pencils. "
    "How many pencils does she have left?",
]


def test_task_pools_score_above_chat() -> None:
    model = content_model()
    tasks = model.probability(MATHS)
    chat = model.probability(HUMAN_PROMPTS)
    assert tasks.min() > 0.5, tasks
    assert np.median(chat) < 0.5, chat
    assert tasks.mean() - chat.mean() > 0.4


def test_a_reworded_wrapper_keeps_the_task_score() -> None:
    # Two operators' paraphrases of one step-by-step wrapper around the same item.
    model = content_model()
    item = MATHS[1]
    a, b = model.probability([f"{item}\n\nLet's think step by step.",
                              f"Please walk me through your reasoning carefully. {item}"])
    assert a > 0.5 and b > 0.5
    assert abs(float(a) - float(b)) < 0.35


def test_signals_carry_the_probability_in_percent() -> None:
    rows = events("acct-x", 4, prompt=MATHS) + events("acct-y", 4, prompt=HUMAN_PROMPTS[:4])
    frame = pl.from_arrow(event_table(rows))
    assert isinstance(frame, pl.DataFrame)
    sig = event_signals(frame)
    p = dict(sig.group_by("account_id").agg(pl.col("distill").cast(pl.Int64).mean()).iter_rows())
    assert sig["distill"].min() >= 0 and sig["distill"].max() <= 100
    assert p["acct-x"] > 50 > p["acct-y"]


def test_corpora_without_a_benign_set_are_refused(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "only.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "2+2?", "source": "x", "kind": "distill"}) + "\n")
    with pytest.raises(ConfigError, match="both `distill` and `benign`"):
        read_corpora(tmp_path)


# --- The vectorised features against a plain reference -----------------------------------

_REFERENCE_MIX = 0x9E3779B97F4A7C15


def _reference_features(text: str | None) -> dict[int, int]:
    """One text's hashed 1-2-gram counts, word by word: scikit-learn's token pattern (Rust
    regex semantics, through polars, one text at a time) and the column as a remainder."""
    words = (pl.Series([text], dtype=pl.String).fill_null("").str.head(MAX_CHARS)
             .str.to_lowercase().str.extract_all(r"\b\w\w+\b")[0].to_list())
    hashes = [int(h) for h in pl.Series(words, dtype=pl.String).hash(17).to_list()]
    grams = list(hashes)
    grams += [((a * _REFERENCE_MIX) & (2**64 - 1)) ^ b
              for a, b in zip(hashes, hashes[1:], strict=False)]
    counts: dict[int, int] = {}
    for g in grams:
        counts[g % N_FEATURES] = counts.get(g % N_FEATURES, 0) + 1
    return counts


def _adversarial_texts(seed: int) -> list[str | None]:
    rng = np.random.default_rng(seed)
    alphabet = list("abcXYZ019_ \n\t.,;-'\"") + [
        "é", "ß", "İ", "Σ", "ς", "K", "ǅ", "\u0301", "\u200d", "日本", "語", "🙂", "١٢",
        "ﬁ", "Ⅻ", "\u00a0", "ϐ",
    ]
    texts: list[str | None] = [None, "", " ", "a", "ab", "a b", "x" * 5000,
                               "word " * 400, "İstanbul ΣΟΦΟΣ straße ﬁnal", "🙂🙂 ab🙂cd"]
    for _ in range(300):
        n = int(rng.integers(0, 900))
        texts.append("".join(rng.choice(alphabet, n)))
    return texts


def test_features_match_the_reference_on_adversarial_texts() -> None:
    texts = _adversarial_texts(5)
    x = featurize(pl.Series(texts, dtype=pl.String))
    assert x.shape == (len(texts), N_FEATURES)
    for i, text in enumerate(texts):
        want = _reference_features(text)
        row = x.getrow(i)
        got = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        assert set(got) == set(want), (i, text)
        norm = np.sqrt(sum(c * c for c in want.values())) or 1.0
        for col, count in want.items():
            assert got[col] == pytest.approx(count / norm, rel=1e-6), (i, text, col)


def test_a_series_and_a_list_give_the_same_probabilities() -> None:
    texts = [t or "" for t in _adversarial_texts(6)] + MATHS + HUMAN_PROMPTS
    model = content_model()
    a = model.probability(texts)
    b = model.probability(pl.Series(texts, dtype=pl.String))
    assert a.dtype == np.float32 and np.array_equal(a, b)


def _reference_scores(texts: list[str | None]) -> np.ndarray:
    """The model's linear scores as scipy computes them from the counts: rows scaled by a
    diagonal matrix of their inverse L2 norms, then the dot product with the weights."""
    import scipy.sparse as sp

    rows = [_reference_features(t) for t in texts]
    cols = np.concatenate([np.fromiter(r, np.int32, len(r)) for r in rows])
    vals = np.concatenate([np.fromiter(r.values(), np.float32, len(r)) for r in rows])
    at = np.repeat(np.arange(len(rows), dtype=np.int32), [len(r) for r in rows])
    counts = sp.csr_matrix((vals, (at, cols)), shape=(len(rows), N_FEATURES))
    counts.sum_duplicates()
    norm = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    norm[norm == 0] = 1.0
    scaled = sp.csr_matrix(sp.diags((1.0 / norm).astype(np.float32)) @ counts)
    out: np.ndarray = scaled @ content_model().coef
    return out


def test_scores_are_the_diagonal_products_to_the_last_bit() -> None:
    texts = _adversarial_texts(7) + list(MATHS) + list(HUMAN_PROMPTS)
    got = featurize(pl.Series(texts, dtype=pl.String)) @ content_model().coef
    assert np.array_equal(got, _reference_scores(texts))
