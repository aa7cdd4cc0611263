"""The open-model test reads each window at its first occurrence per text, and stays exact on marked text."""

from __future__ import annotations

from typing import Any

import numpy as np

from distillguard.localmodel import generate
from distillguard.trace import contrast_tuples, open_tuples, radioactivity_open
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


def test_contrast_scores_the_tokens_the_suspect_learned_beyond_the_reference() -> None:
    import torch

    def logp(rows: list[list[float]]) -> torch.Tensor:
        return torch.log_softmax(torch.tensor(rows, dtype=torch.float32), dim=-1)

    # after token 1 both models like token 4 most, but only the suspect also likes token 5
    suspect = [logp([[0, 0, 0, 0, 3, 2], [0, 0, 0, 3, 0, 0], [0, 9, 0, 0, 0, 0], [0] * 6])]
    reference = [logp([[0, 0, 0, 0, 3, 0], [0, 0, 0, 3, 0, 0], [0] * 6, [0] * 6])]
    t = contrast_tuples([[1, 2, 1, 3]], suspect, reference, 1, top_k=3, per_context=1)
    assert dict(zip(t.windows[:, 0].tolist(), t.tokens.tolist(), strict=True))[1] == 5
    assert t.tokens.size == 2  # windows 1 and 2; the second reading of window 1 is dropped
    t2 = contrast_tuples([[1, 2, 1, 3]], suspect, reference, 1, top_k=2, per_context=2)
    assert sorted(t2.tokens[t2.windows[:, 0] == 1].tolist()) == [4, 5]


def test_weighted_contrast_weights_each_token_by_its_gain_within_the_window() -> None:
    import torch

    def logp(rows: list[list[float]]) -> torch.Tensor:
        return torch.log_softmax(torch.tensor(rows, dtype=torch.float32), dim=-1)

    # after token 1 the suspect supports tokens 2..5; it gains most over the reference on 5,
    # somewhat on 4, and not on 2 and 3 (gains c, c, c + 1, c + 3: z -0.82, -0.82, 0, 1.63)
    suspect = [logp([[0, 0, 4, 4, 4, 4], [0] * 6])]
    reference = [logp([[0, 0, 4, 4, 3, 1], [0] * 6])]
    t = contrast_tuples([[1, 7]], suspect, reference, 1, top_k=4)
    assert t.weights is not None
    assert dict(zip(t.tokens.tolist(), t.weights.tolist(), strict=True)) == {5: 3}  # round(2 * 1.63); 4 has z 0
    # a window whose candidates all gain the same carries no weight: nothing scored
    flat = contrast_tuples([[1, 7]], reference, reference, 1, top_k=4)
    assert flat.tokens.size == 0


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
    texts = [p + m for p, m in zip(prompts, marked, strict=False)]
    report = radioactivity_open(key, model, tok, texts)
    assert report.layers[0].scored_tuples > 300
    assert report.p_value > 1e-3, report.lines()
    # contrasted with a reference that shares nothing with the key (here: a half-trained copy)
    from distillguard.localmodel import LocalModelConfig, build_model, encode_documents, train_lm

    other = build_model(LocalModelConfig(seed=3), len(tok))
    train_lm(other, encode_documents(tok, prompts), steps=30, seq_len=64, batch_size=8,
             learning_rate=3e-3, seed=3, progress=False)
    report = radioactivity_open(key, model, tok, texts, reference=other)
    assert report.layers[0].scored_tuples > 300
    assert report.p_value > 1e-3, report.lines()
