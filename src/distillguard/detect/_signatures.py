"""Per-event signals computed from text and request metadata, vectorised with polars.

Every event becomes a row of small integers and flags: template keys (MinHash bands over the
first and last words of the prompt, so that filled slots and light rewording still collide),
edge keys (the prompt's first and its last word, hashed: what a frame of a word or two around
a varying task keeps constant, see `_cohort`), a system-prompt hash, and flags for reasoning elicitation, rubric grading, coding, maths and tool
use. Only these leave this module: the detector never holds texts as Python objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from distillguard.detect._content import content_model
from distillguard.detect._items import item_signals
from distillguard.detect._text_cache import TextCache

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
# Requests that manufacture training data (self-instruct, Evol-Instruct, Alpaca wrappers).
DATAGEN_PATTERN = (
    r"come up with (a series of|a list of|\d+|new|diverse)|generate (a list of|\d+|new|diverse) "
    r"(tasks|instructions|questions|examples|prompts)|rewrite the (given|following) prompt|"
    r"#given prompt#|#rewritten prompt#|#created prompt#|below is an instruction that describes|"
    r"### instruction|task instructions?:|more complex version|rarer (version|prompt)"
)
CODE_PATTERN = (
    r"```|\bdef |\bfunction\b|\bpython\b|\bjavascript\b|\bjava\b|\bsql\b|\bc\+\+|\bcode\b|"
    r"\bimplement|\balgorithm|\bclass \w|\breturn\b|\bcompile|\bregex|\bapi\b|\bbug\b"
)
MATH_WORDS_PATTERN = (
    r"\bhow (many|much)\b|\bcalculat|\bsolve\b|\bequation|\bprobabilit|\bpercent"
)
MATH_EXPR_PATTERN = r"\d\s*[-+*/=^]\s*\d"
MATH_PATTERN = f"{MATH_WORDS_PATTERN}|{MATH_EXPR_PATTERN}"


def _ascii(pattern: str) -> str:
    # ASCII classes and word boundaries keep the regex engine on its fast path (a Unicode `\b`
    # beside `\d\s*` made one pattern 100x slower); the patterns are English anyway.
    return f"(?-u:{pattern})"


HEAD_WORDS = 12
_EDGE_CHARS = 100  # enough text for a dozen words at either end
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

# The text work of a batch is split in parts that run at once: the flags and the content model
# in these threads, the prompts' other signals in the caller's. Polars and numpy release the
# GIL, so a batch takes about half the time where a core is free (the replay, waiting on the
# first batches, leaves one); the work done is the same. Shared by all callers (stateless).
_BESIDE = ThreadPoolExecutor(max_workers=2, thread_name_prefix="distillguard-signals-part")


def _words(expr: pl.Expr, head: bool) -> pl.Expr:
    part = expr.str.head(_EDGE_CHARS) if head else expr.str.tail(_EDGE_CHARS)
    words = part.str.to_lowercase().str.extract_all(r"[a-z]+")
    return words.list.head(HEAD_WORDS) if head else words.list.tail(TAIL_WORDS)


def _minhash_bands(words: pl.Series, prefix: str) -> list[pl.Series]:
    """MinHash of each row's word set folded into `_BANDS` band keys (u64; null for no words).

    Works on the flat array of word hashes with numpy (`minimum.reduceat` over row offsets):
    one pass per permutation instead of a per-row list evaluation.
    """
    lens = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode().hash(11).to_numpy().astype(np.uint64)
    # Whether `explode` leaves a null for an empty list has changed across polars releases.
    slots = lens if len(flat) == lens.sum() else np.maximum(lens, 1)
    starts = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
    empty = lens == 0
    out: list[pl.Series] = []
    with np.errstate(over="ignore"):
        mins = [
            # The appended maximum gives a trailing empty row an index and never wins a min.
            np.minimum.reduceat(
                np.append((flat * np.uint64(a) + np.uint64(b)) & np.uint64(_MASK48),
                          np.uint64(_MASK48)),
                starts,
            )
            for a, b in _PERMS
        ]
        for band in range(_BANDS):
            key = np.full(len(starts), np.uint64(band + 1) * np.uint64(0x9E3779B97F4A7C15))
            for r in range(_BAND_ROWS):
                key = (key ^ mins[band * _BAND_ROWS + r]) * np.uint64(0xBF58476D1CE4E5B9)
            key = key >> np.uint64(1)  # keep the top bit clear: signed engines read it too
            series = pl.Series(f"{prefix}{band}", key, dtype=pl.UInt64)
            out.append(series.set(pl.Series(empty), None) if empty.any() else series)
    return out


TEMPLATE_KEYS = tuple(f"{side}{b}" for side in ("head", "tail") for b in range(_BANDS))
#: The prompt's first word and its last word (u64 hashes; null when the prompt has no words).
EDGE_KEYS = ("lead", "end")

# The plain-Python twins of `_words` and `_minhash_bands`, for one request at a time (the
# gateway's first-request check): tests assert they give the vectorised path's keys.
_WORD = re.compile(r"[a-z]+")
_MASK64 = (1 << 64) - 1


def edge_words(prompt: str, head: bool) -> list[str]:
    """The words `_words` takes from one end of one prompt."""
    part = prompt[:_EDGE_CHARS] if head else prompt[-_EDGE_CHARS:]
    words = _WORD.findall(part.lower())
    return words[:HEAD_WORDS] if head else words[-TAIL_WORDS:]


def band_keys(word_hashes: Sequence[int]) -> list[int | None]:
    """`_minhash_bands` of one row from its words' hashes (u64): `_BANDS` keys, None for no words."""
    if not word_hashes:
        return [None] * _BANDS
    # The low 48 bits of h * a + b do not depend on the u64 wrap-around numpy applies.
    mins = [min((h * a + b) & _MASK48 for h in word_hashes) for a, b in _PERMS]
    out: list[int | None] = []
    for band in range(_BANDS):
        key = ((band + 1) * 0x9E3779B97F4A7C15) & _MASK64
        for r in range(_BAND_ROWS):
            key = ((key ^ mins[band * _BAND_ROWS + r]) * 0xBF58476D1CE4E5B9) & _MASK64
        out.append(key >> 1)
    return out


def event_signals(events: pl.DataFrame, prompts: TextCache | None = None) -> pl.DataFrame:
    """Reduce events (format columns) to per-event signals; text columns are dropped.

    Returns one row per input row, same order, with: ts_us, event_id, account_id, ip, model, is_browser,
    turns, tools, completion_tokens, capped, cot, rubric, datagen, code, math, distill (the
    content model's P(distill) of the prompt in whole percent, see `_content`), sys and the
    `TEMPLATE_KEYS` band columns and the `EDGE_KEYS` (u64; null when the prompt has no
    words), and the `ITEM_COLUMNS`: item (u64 hash of the task line; null when none) and
    topic (u32 sketch of its words), see `_items`.

    The text work runs once per distinct text it reads: the flags once per distinct (prompt,
    system), the prompt's own signals (content model, template and edge keys, item) once per
    distinct prompt, the system hash once per distinct system prompt. Template campaigns,
    benchmark sets and retries repeat prompts, and a log has few system prompts. With
    `prompts` (a `TextCache` kept across the batches of one log), a prompt's own signals are
    computed once per distinct prompt in all those batches (the same values: see `_text_cache`).
    """
    meta = events.select(
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
    )
    flags = _BESIDE.submit(_per_distinct, events.select("prompt", "system"), _flag_signals)
    prompt_fn: Callable[[pl.DataFrame], pl.DataFrame] = (
        _prompt_signals if prompts is None
        else lambda texts: prompts.rows(texts, _prompt_signals)
    )
    prompt = _per_distinct(events.select("prompt"), prompt_fn)
    sys = _per_distinct(events.select("system"), _system_hash)
    return pl.concat([meta, flags.result(), prompt.select("distill"), sys,
                      prompt.select(*TEMPLATE_KEYS, *EDGE_KEYS, *ITEM_COLUMNS)], how="horizontal")


_FLAGS = ("cot", "rubric", "datagen", "code", "math")
ITEM_COLUMNS = ("item", "topic")


def _per_distinct(texts: pl.DataFrame,
                  fn: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
    """`fn(texts)`, computed on one row per distinct value of all columns and spread back.

    Rows are grouped by a hash of their columns, then checked against their group's text; the
    rare row whose hash collides with another text is computed on its own.
    """
    h = texts.select(_row_hash(texts.columns).alias("h"),
                     pl.int_range(pl.len(), dtype=pl.Int64).alias("row"))
    firsts = h.filter(pl.col("h").is_first_distinct())
    reps = texts[firsts["row"]]
    at = h.join(firsts.select("h", pl.int_range(pl.len(), dtype=pl.Int64).alias("at")),
                on="h", how="left", maintain_order="left")["at"]
    out = fn(reps)[at]
    spread = reps[at]
    same = pl.Series(np.ones(texts.height, bool))
    for c in texts.columns:
        same = same & texts[c].eq_missing(spread[c])
    if not same.all():
        odd = np.flatnonzero(~same.to_numpy())
        out = out.with_row_index("_i").update(
            fn(texts[odd]).with_columns(pl.Series("_i", odd, pl.UInt32)), on="_i",
            include_nulls=True,
        ).sort("_i").drop("_i")
    return out


def _row_hash(columns: list[str]) -> pl.Expr:
    key = pl.lit(0, pl.UInt64)
    for i, c in enumerate(columns):
        key = key ^ pl.col(c).hash(101 + i)
    return key


def _system_hash(texts: pl.DataFrame) -> pl.DataFrame:
    return texts.select(
        pl.when(pl.col("system").fill_null("").str.len_chars() > 0)
        .then(
            pl.col("system")
            .str.to_lowercase()
            .str.replace_all(r"\s+", " ")
            .str.strip_chars()
            .hash(5)
        )
        .otherwise(None)
        .alias("sys")
    )


def _edge_key(word: pl.Expr) -> pl.Expr:
    """A word's hash with the top bit clear (signed engines read it too); null for no word."""
    return pl.when(word.is_not_null()).then(word.hash(13).floordiv(2))


def _flag_signals(texts: pl.DataFrame) -> pl.DataFrame:
    """The `_FLAGS` of each (prompt, system) row: the patterns read both texts."""
    lowered = (
        pl.col("prompt").fill_null("").str.head(2000)
        + pl.lit("\n")
        + pl.col("system").fill_null("").str.head(500)
    ).str.to_lowercase()
    # Lowered once, read by every pattern.
    return texts.select(lowered.alias("_lower")).select(
        pl.any_horizontal(pl.col("_lower").str.contains(_ascii(part)) for part in parts)
        .alias(name)
        for name, parts in zip(_FLAGS, _FLAG_PATTERNS, strict=True)
    )


# Each flag's pattern as alternatives searched one at a time (a text matches an alternation
# where it matches one of its alternatives). Maths is split: its digit expression, which no
# literal prefix announces, in one alternation with the words made the regex engine read every
# text several times slower than the two searches apart.
_FLAG_PATTERNS = ((COT_PATTERN,), (RUBRIC_PATTERN,), (DATAGEN_PATTERN,), (CODE_PATTERN,),
                  (MATH_WORDS_PATTERN, MATH_EXPR_PATTERN))


def _prompt_signals(prompts: pl.DataFrame) -> pl.DataFrame:
    """Of each prompt: `distill`, the template bands, the edge keys and the item columns."""
    prompt = prompts["prompt"]
    p = _BESIDE.submit(content_model().probability, prompt)
    words = prompts.select(
        _words(pl.col("prompt").fill_null(""), head=True).alias("_head_words"),
        _words(pl.col("prompt").fill_null(""), head=False).alias("_tail_words"),
    )
    bands = (_minhash_bands(words["_head_words"], "head")
             + _minhash_bands(words["_tail_words"], "tail"))
    edges = words.select(
        # The top bit cleared, as for the bands: signed engines read these too.
        _edge_key(pl.col("_head_words").list.first()).alias("lead"),
        _edge_key(pl.col("_tail_words").list.last()).alias("end"),
    )
    items = item_signals(prompt)
    # Whole percent: the state sums per-event signals as integers.
    distill = pl.Series("distill", np.rint(p.result() * 100.0).astype(np.uint8), dtype=pl.UInt8)
    return pl.DataFrame([distill, *bands]).with_columns(*edges, *items)
