"""The open-model test reads each window at its first occurrence per text, and stays exact on marked text."""

from __future__ import annotations

from typing import Any

import numpy as np

from distillguard.localmodel import generate
from distillguard.trace import open_tuples, radioactivity_open
from distillguard.watermark import KeyVersion, WatermarkConfig, WatermarkKey
from distillguard.watermark import _seeding as S


def test_each_window_is_read_at_its_first_occurrence_in_each_text() -> None:
    # text 1 reads token 1 twice (the second time after text that followed it: dropped);
    # text 2 reads token 1 again, predicting the same token (the same tuple: counted once)
    t = open_tuples([[1, 2, 1, 3], [1, 4]], [[5, 6, 7, 8], [5, 9]], 1)
    assert t.tokens.tolist() == [5, 6]
    assert t.windows[:, 0].tolist() == [1, 2]
    assert np.array_equal(t.ctx_ids, S.context_ids(np.array([[1], [2]])))
    assert t.dropped_repeats == 2 and t.tokens_seen == 6


def test_a_model_that_never_learned_the_key_is_not_radioactive_on_our_marked_text(
    teacher: tuple[Any, Any], prompts: list[str]
) -> None:
    # the teacher reads its own watermarked answers: what it predicts after a window can
    # coincide with the marked token there, yet the test must stay exact (H0 holds)
    model, tok = teacher
    key = WatermarkKey((KeyVersion(1, b"open-model-h0-test-secret-32-byt", WatermarkConfig()),), 1)
    marked = generate(
        model, tok, prompts[:20], max_new_tokens=200, min_new_tokens=200,
        logits_processors=[key.logits_processor("acct-1")], seed=4,
    )
    report = radioactivity_open(key, model, tok, [p + m for p, m in zip(prompts, marked, strict=False)])
    det = report.layers[0]
    assert det.scored_tuples > 300
    assert report.p_value > 1e-3, report.lines()
