"""The open-model test reads each window at its first occurrence per text, and stays exact on marked text."""

from __future__ import annotations

import hashlib
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


def _logp(rows: list[list[float]]) -> Any:
    import torch

    return torch.log_softmax(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_a_window_read_more_often_weighs_more() -> None:
    # window 1 is read at its first occurrence in 4 texts, windows 2, 3, 4 in one each (median
    # reads: 1); the same gains after each (z of token 5: 1.63) weigh round(2 * 1.63 * sqrt(4 / 1))
    # = 7 after window 1 and round(2 * 1.63) = 3 after the others
    flat = [0.0] * 10
    sus, ref = [0, 0, 4, 4, 4, 4, 0, 0, 0, 0], [0, 0, 4, 4, 3, 1, 0, 0, 0, 0]
    texts = [[1, 7], [1, 8], [1, 9], [1, 6], [2, 7], [3, 7], [4, 7]]
    suspect = [_logp([sus, flat]) for _ in texts]
    reference = [_logp([ref, flat]) for _ in texts]
    t = contrast_tuples(texts, suspect, reference, 1, top_k=4)
    assert t.weights is not None
    got = dict(zip(zip(t.windows[:, 0].tolist(), t.tokens.tolist(), strict=True), t.weights.tolist(), strict=True))
    assert got == {(1, 5): 7, (2, 5): 3, (3, 5): 3, (4, 5): 3}
    t = contrast_tuples(texts, suspect, reference, 1, top_k=4, scale_by_reads=False)
    assert t.weights is not None and t.weights.tolist() == [3, 3, 3, 3]


def fixed_key(seed: int) -> WatermarkKey:
    """A key whose secret is derived from `seed`, the same in every run."""
    secret = hashlib.sha256(f"distillguard-open-test-key-{seed}".encode()).digest()
    return WatermarkKey((KeyVersion(1, secret, WatermarkConfig()),), 1)


def _zipf_reading(seed: int, n_texts: int = 60, length: int = 100, vocab: int = 512) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [((rng.zipf(1.3, size=length) - 1) % vocab).tolist() for _ in range(n_texts)]


def test_scaled_weights_keep_the_p_value_exact_under_h0() -> None:
    # a suspect and a reference that never saw any key: across 400 fixed keys the p-value of
    # the scaled weighted count (weights up to 12) is super-uniform, as the tail promises
    import torch

    from distillguard.watermark import detect_tuples

    rows = _zipf_reading(11)
    gen = torch.Generator().manual_seed(12)
    suspect = [torch.log_softmax(2 * torch.randn(len(r), 512, generator=gen), dim=-1) for r in rows]
    reference = [torch.log_softmax(lp + 0.5 * torch.randn(lp.shape, generator=gen), dim=-1) for lp in suspect]
    t = contrast_tuples(rows, suspect, reference, 1)
    assert t.weights is not None and int(t.weights.max()) > 6 and t.tokens.size > 1000
    ps = np.array([detect_tuples(fixed_key(i), lambda h: t, controls=False).p_value for i in range(400)])
    for level in (0.01, 0.05, 0.2, 0.5):
        assert float(np.mean(ps <= level)) <= level + 2.5 * np.sqrt(level * (1 - level) / 400), level
    assert float(np.mean(ps <= 0.5)) >= 0.4  # and not trivially conservative


def test_scaled_weights_find_a_suspect_that_learned_the_green_lists() -> None:
    # the suspect adds a small bias to the key's green tokens after every window, under
    # independent noise at each reading: pooled over many reads, a frequent window's gains
    # are better estimated, and scaling by reads finds the bias more surely than not scaling
    import torch

    from distillguard.watermark._scheme import LayerKeys

    key = fixed_key(7)
    version: KeyVersion = key.versions[0]
    layer = LayerKeys.of(version)
    vocab = np.arange(512, dtype=np.int64)
    windows = np.repeat(vocab, 512)[:, None]
    tokens = np.tile(vocab, 512)
    green = S.unit(layer.global_values(windows, S.context_ids(windows), tokens, S.hashes_of_tokens(tokens)))
    green_of = torch.from_numpy((green < WatermarkConfig().gamma).reshape(512, 512).astype(np.float32))
    rows = _zipf_reading(21)
    gen = torch.Generator().manual_seed(22)
    base = torch.log_softmax(3 * torch.randn(512, 512, generator=gen), dim=-1)  # the language, per window
    reference, suspect = [], []
    for r in rows:
        prev = torch.tensor(r)
        reference.append(torch.log_softmax(base[prev] + 0.6 * torch.randn(len(r), 512, generator=gen), dim=-1))
        suspect.append(
            torch.log_softmax(base[prev] + 0.1 * green_of[prev] + 0.6 * torch.randn(len(r), 512, generator=gen), -1)
        )
    p = {
        scaled: radioactivity_p(key, rows, suspect, reference, scaled)
        for scaled in (True, False)
    }
    assert p[True] < 1e-6, p
    assert p[True] < p[False], p


def radioactivity_p(key: WatermarkKey, rows: list[list[int]], suspect: Any, reference: Any, scaled: bool) -> float:
    from distillguard.watermark import detect_tuples

    det = detect_tuples(key, lambda h: contrast_tuples(rows, suspect, reference, h, scale_by_reads=scaled))
    assert max(det.controls) > 1e-3
    return det.p_value


def test_reading_passes_average_each_position_over_the_passes_that_read_it() -> None:
    import pytest

    from distillguard._errors import ConfigError
    from distillguard.trace._trace import _log_probs, _read_passes

    class Model:  # next-token log-probabilities that depend on how far into its input a token is
        def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
            import torch

            logits = torch.arange(input_ids.shape[1], dtype=torch.float32)[None, :, None].expand(
                input_ids.shape[0], -1, 3
            ) * torch.tensor([1.0, 0.0, 0.0])
            return type("Out", (), {"logits": logits})()

    rows = [[5, 6, 7, 8], [5, 6]]
    got = _read_passes(Model(), rows, 2, 0, (0, 2))
    one = _log_probs(Model(), rows, 2, 0)
    shifted = _log_probs(Model(), [[7, 8]], 2, 0)[0]
    assert np.allclose(got[0][:2].numpy(), one[0][:2].numpy())  # read by pass 0 only
    assert np.allclose(got[0][2:].numpy(), ((one[0][2:] + shifted) / 2).numpy())
    assert np.allclose(got[1].numpy(), one[1].numpy())  # too short for pass 2
    with pytest.raises(ConfigError, match="include 0"):
        _read_passes(Model(), rows, 2, 0, (2, 4))
