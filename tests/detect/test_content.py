"""The content model: trained on the shipped corpora, it reads the task, not the wrapper."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from distillguard._errors import ConfigError
from distillguard.detect._content import content_model, read_corpora
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
