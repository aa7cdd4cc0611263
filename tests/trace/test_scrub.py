"""The scrubbing attacks: rule-based and resampling paraphrase, Pan et al.'s neutraliser."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from distillguard._errors import ConfigError
from distillguard.localmodel import generate, read_corpus_texts
from distillguard.trace._experiment import chat_prompt
from distillguard.trace._scrub import (
    NeutralisedModel,
    NeutralisingProcessor,
    RuleParaphrase,
    bigram_log_ratio,
    estimate_neutraliser,
    normalise_punctuation,
    paraphrase_resample,
    paraphrase_rules,
    reorder_sentences,
)
from distillguard.watermark import KeyVersion, WatermarkConfig, WatermarkKey, detect_lexical


def fixed_key(seed: int, config: WatermarkConfig | None = None) -> WatermarkKey:
    """A key derived from `seed`: the same in every run."""
    secret = hashlib.sha256(f"distillguard-scrub-test-key-{seed}".encode()).digest()
    return WatermarkKey((KeyVersion(1, secret, config or WatermarkConfig()),), active=1)

TEXT = (
    "It is often said that we don\u2019t need big models. However , the answer is usually simple! "
    "Maybe it is not.\nI am going to the center \u2014 quickly. For example, the color is nice."
)


def test_rules_are_seeded_and_each_rule_fires() -> None:
    assert paraphrase_rules(TEXT, 1) == paraphrase_rules(TEXT, 1)
    outs = {paraphrase_rules(TEXT, s) for s in range(8)}
    assert len(outs) >= 4
    off = RuleParaphrase(swap_rate=0.0, reorder_rate=0.0, normalise=False)
    assert paraphrase_rules(TEXT, 3, off) == TEXT
    swapped = paraphrase_rules(TEXT, 3, RuleParaphrase(swap_rate=1.0, reorder_rate=0.0, normalise=False))
    assert swapped != TEXT and swapped.count("\n") == 1
    assert any(w in swapped for w in ("frequently", "large", "typically", "centre", "For instance", "do not"))


def test_reorder_keeps_the_sentences_and_normalise_maps_to_ascii() -> None:
    import random

    line = "One is here. Two is there! Three? Four."
    out = reorder_sentences(line, random.Random(2))
    assert Counter(out.split(" ")) == Counter(line.split(" ")) and out != line
    assert reorder_sentences("Only one sentence here.", random.Random(0)) == "Only one sentence here."
    assert normalise_punctuation("don\u2019t \u201cgo\u201d\u2026 now , ok") == "don't \"go\"... now, ok"


def test_bad_rates_are_refused_all_at_once() -> None:
    with pytest.raises(ConfigError, match="swap_rate=1.5.*reorder_rate=-0.1"):
        RuleParaphrase(swap_rate=1.5, reorder_rate=-0.1)


def test_rules_at_full_rate_remove_the_lexical_mark(corpora_dir: Path) -> None:
    """Every lexicon choice re-drawn without the key: the lexical layer's evidence is gone."""
    key = fixed_key(301)
    texts = read_corpus_texts(["arena_hard", "wildchat_1k"], 300, root=corpora_dir)
    marked = [key.text_watermarker("acct-9").apply(t) for t in texts]
    assert detect_lexical(key, marked).p_value < 1e-12
    full = RuleParaphrase(swap_rate=1.0)
    scrubbed = [paraphrase_rules(t, i, full) for i, t in enumerate(marked)]
    assert detect_lexical(key, scrubbed).p_value > 1e-3


def test_resample_is_seeded_and_keeps_untouched_tokens(teacher: tuple[Any, Any], prompts: list[str]) -> None:
    model, tok = teacher
    texts = generate(model, tok, [chat_prompt(p) for p in prompts[:4]], max_new_tokens=40, min_new_tokens=40, seed=0)
    pre = [chat_prompt(p) for p in prompts[:4]]
    same = paraphrase_resample(model, tok, pre, texts, rate=0.0, seed=1)
    assert [tok(t, add_special_tokens=False)["input_ids"] for t in same] == [
        tok(t, add_special_tokens=False)["input_ids"] for t in texts
    ]
    a = paraphrase_resample(model, tok, pre, texts, rate=0.5, seed=1)
    assert a == paraphrase_resample(model, tok, pre, texts, rate=0.5, seed=1)
    assert a != texts and a != paraphrase_resample(model, tok, pre, texts, rate=0.5, seed=2)
    with pytest.raises(ConfigError, match="rate"):
        paraphrase_resample(model, tok, pre, texts, rate=1.5, seed=1)


def test_log_ratio_recovers_a_bigram_bias() -> None:
    """Student = reference + delta on green (prev, token) pairs: the centred mean ratio is delta's."""
    gen = torch.Generator().manual_seed(0)
    vocab, n = 12, 400
    green = torch.rand(vocab, vocab, generator=gen) < 0.25
    ref = torch.log_softmax(torch.randn(n, vocab, generator=gen), dim=-1)
    prev = torch.randint(0, vocab, (n,), generator=gen)
    student = torch.log_softmax(ref + 2.0 * green[prev], dim=-1)
    est = bigram_log_ratio(student, ref, prev, vocab)
    want = 2.0 * green.double()
    want = want - want.mean(dim=-1, keepdim=True)
    seen = torch.bincount(prev, minlength=vocab) > 0
    assert torch.allclose(est[seen], want[seen], atol=1e-6)
    assert torch.all(est[~seen] == 0)


def _green_table(key: Any, vocab: int) -> torch.Tensor:
    """The bias the key's processor adds after each one-token context (h = 1)."""
    proc = key.logits_processor(None)
    return proc(torch.arange(vocab)[:, None], torch.zeros(vocab, vocab)).float()


def test_neutraliser_undoes_an_idealised_watermarked_student(teacher: tuple[Any, Any], prompts: list[str]) -> None:
    """A student whose only difference from the reference is the key's green-list bias: the
    estimated bias is that bias (centred) on every context read, and the
    neutralised student's next-token distributions are the reference's there."""
    model, tok = teacher
    key = fixed_key(302, WatermarkConfig(account_delta=0.0))
    vocab = len(tok)
    table = _green_table(key, vocab)
    assert set(table.unique().tolist()) == {0.0, key.config.delta}
    student = NeutralisedModel(model, -table)  # adds the bias at every position
    texts = [chat_prompt(p) + t for p, t in zip(prompts[:12], generate(
        student.model, tok, [chat_prompt(p) for p in prompts[:12]], max_new_tokens=60,
        logits_processors=[NeutralisingProcessor(-table)], seed=3), strict=True)]
    bias = estimate_neutraliser(student, model, tok, texts)
    # The contexts the estimate reads: each text up to the student's context length.
    n = int(student.config.n_positions)
    rows = [r[:n] for r in tok(texts, add_special_tokens=False)["input_ids"]]
    seen = sorted({t for r in rows for t in r[:-1]})
    centred = table - table.mean(dim=-1, keepdim=True)
    assert len(seen) > 50
    assert torch.allclose(bias[seen], centred[seen], atol=1e-3)
    ids = torch.tensor([rows[0]])
    after = torch.log_softmax(NeutralisedModel(student, bias)(ids).logits, dim=-1)
    ref = torch.log_softmax(model(input_ids=ids).logits, dim=-1)
    assert torch.allclose(after, ref, atol=1e-3)
    assert not torch.allclose(torch.log_softmax(student(ids).logits, dim=-1), ref, atol=1e-1)


def test_neutraliser_of_identical_models_is_zero(teacher: tuple[Any, Any], prompts: list[str]) -> None:
    model, tok = teacher
    bias = estimate_neutraliser(model, model, tok, [chat_prompt(p) + " yes" for p in prompts[:3]])
    assert float(bias.abs().max()) == 0.0
    with pytest.raises(ConfigError, match="No text long enough"):
        estimate_neutraliser(model, model, tok, [""])
