"""Per-event signals computed from text and request metadata, vectorised with polars.

Every event becomes a row of small integers and flags: template keys (MinHash bands over the
first and last words of the prompt, so that filled slots and light rewording still collide),
a system-prompt hash, and flags for reasoning elicitation, rubric grading, coding, maths and tool
use. Only these leave this module: the detector never holds texts as Python objects.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# Patterns over lower-cased text. Kept deliberately literal so that an analyst can read why an
# event was counted.
COT_PATTERN = (
    r"step[- ]by[- ]step|think (it )?through|show (your|all) (work|steps|reasoning)|"
    r"explain your (reasoning|answer|thinking)|chain[- ]of[- ]thought|reasoning trace|"
    r"let'?s think|walk me through|justify (each|every) step|detailed rationale|"
    r"reason carefully|think carefully"
)
RUBRIC_PATTERN = (
    r"rubric|grade (the|this|each)|score (the|this|each) (response|answer|essay|solution)|"
    r"on a scale (of|from)|evaluate the (following )?(response|answer)|as a grader|criteria:"
)
CODE_PATTERN = (
    r"```|\bdef |\bfunction\b|\bpython\b|\bjavascript\b|\bjava\b|\bsql\b|\bc\+\+|\bcode\b|"
    r"\bimplement|\balgorithm|\bclass \w|\breturn\b|\bcompile|\bregex|\bapi\b|\bbug\b"
)
MATH_PATTERN = (
    r"\bhow many\b|\bhow much\b|\bcalculate|\bsolve\b|\bequation|\bprobability|\bpercent|"
    r"\btotal\b.*\d|\d+\s*[\+\-\*/x×]\s*\d+"
)

HEAD_WORDS = 12
TAIL_WORDS = 12
_MASK48 = (1 << 48) - 1
_BAND_ROWS = 2
_BANDS = 2  # per side


def _perm_params(seed: int, count: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**31 - 1, count)
    b = rng.integers(0, 2**31 - 1, count)
    return [(int(x) | 1, int(y)) for x, y in zip(a, b, strict=True)]


_PERMS = _perm_params(20260226, _BAND_ROWS * _BANDS)


def _words(expr: pl.Expr, head: bool) -> pl.Expr:
    part = expr.str.head(160) if head else expr.str.tail(160)
    cleaned = part.str.to_lowercase().str.replace_all(r"[^a-z\s]+", " ").str.strip_chars()
    words = cleaned.str.split(" ").list.eval(pl.element().filter(pl.element().str.len_chars() > 0))
    return words.list.head(HEAD_WORDS) if head else words.list.tail(TAIL_WORDS)


def _minhash_bands(frame: pl.DataFrame, column: str, prefix: str) -> pl.DataFrame:
    """MinHash of the word set in `column`, folded into `_BANDS` band keys (u64, 0 = empty)."""
    exploded = (
        frame.select("_row", pl.col(column))
        .explode(column)
        .filter(pl.col(column).is_not_null())
        .with_columns(pl.col(column).hash(11).alias("_h"))
    )
    mins = exploded.group_by("_row").agg(
        [
            ((pl.col("_h") * a + b) & _MASK48).min().alias(f"_m{k}")
            for k, (a, b) in enumerate(_PERMS)
        ]
    )
    bands = mins.select(
        "_row",
        *[
            pl.concat_list([pl.col(f"_m{band * _BAND_ROWS + r}") for r in range(_BAND_ROWS)])
            .hash(band + 101)
            .alias(f"{prefix}{band}")
            for band in range(_BANDS)
        ],
    )
    return bands


TEMPLATE_KEYS = tuple(f"{side}{b}" for side in ("head", "tail") for b in range(_BANDS))


def event_signals(events: pl.DataFrame) -> pl.DataFrame:
    """Reduce events (format columns) to per-event signals; text columns are dropped.

    Returns one row per input row, same order, with: ts_us, event_id, account_id, ip, model, is_browser,
    turns, tools, completion_tokens, capped, cot, rubric, code, math, sys and the
    `TEMPLATE_KEYS` band columns (u64; null when the prompt has no words).
    """
    lowered = pl.col("_lower")
    base = events.with_row_index("_row").with_columns(
        (
            pl.col("prompt").fill_null("").str.head(2000)
            + pl.lit("\n")
            + pl.col("system").fill_null("").str.head(500)
        )
        .str.to_lowercase()
        .alias("_lower")
    )
    sig = base.select(
        "_row",
        pl.col("ts").dt.epoch("us").alias("ts_us"),
        "event_id",
        "account_id",
        pl.col("ip").fill_null(""),
        pl.col("model").fill_null(""),
        pl.col("user_agent").fill_null("").str.contains("Mozilla").alias("is_browser"),
        pl.col("turns").fill_null(1).cast(pl.Int32),
        pl.col("tools").fill_null(0).cast(pl.Int32),
        pl.col("completion_tokens").fill_null(0).cast(pl.Int64),
        (
            pl.col("max_tokens").is_not_null()
            & (pl.col("completion_tokens").fill_null(0) >= pl.col("max_tokens") * 0.95)
        ).alias("capped"),
        lowered.str.contains(COT_PATTERN).alias("cot"),
        lowered.str.contains(RUBRIC_PATTERN).alias("rubric"),
        lowered.str.contains(CODE_PATTERN).alias("code"),
        lowered.str.contains(MATH_PATTERN).alias("math"),
        pl.when(pl.col("system").fill_null("").str.len_chars() > 0)
        .then(
            pl.col("system")
            .str.to_lowercase()
            .str.replace_all(r"\s+", " ")
            .str.strip_chars()
            .hash(5)
        )
        .otherwise(None)
        .alias("sys"),
    )
    words = base.select(
        "_row",
        _words(pl.col("prompt").fill_null(""), head=True).alias("_hw"),
        _words(pl.col("prompt").fill_null(""), head=False).alias("_tw"),
    )
    head = _minhash_bands(words, "_hw", "head")
    tail = _minhash_bands(words, "_tw", "tail")
    out = sig.join(head, on="_row", how="left").join(tail, on="_row", how="left")
    return out.sort("_row").drop("_row")
