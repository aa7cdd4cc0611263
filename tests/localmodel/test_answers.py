"""The local model answers every prompt: non-empty, in the prompt's script, never from the NC corpora."""

from __future__ import annotations

import gzip
import json
import random
from typing import Any

import pytest

from distillguard._data import corpora_root
from distillguard.gateway import ChatRequest, LocalUpstream, Message
from distillguard.gateway._local import _prompt_text
from distillguard.localmodel import (
    DEFAULT_CORPORA,
    LocalModelConfig,
    answer,
    answers_in_script,
    build_model,
    chat_prompt,
    dominant_script,
    load_default_model,
)

NON_COMMERCIAL = {"alpaca_5k", "code_alpaca", "wizardlm_testset"}
# One prompt per writing system the shipped corpora use, and some they do not.
WORLD = [
    "Give three tips for staying healthy.", "日本の首都はどこですか？", "你好，请介绍一下你自己。",
    "Привет, как дела?", "안녕하세요, 잘 지내세요?", "مرحبا كيف حالك", "שלום, מה שלומך?",
    "สวัสดีครับ", "Γειά σου κόσμε", "Բարեւ ձեզ", "नमस्ते, आप कैसे हैं?", "1 + 1 = ?", "???",
]
SEED = 20261207


def _corpus(name: str) -> list[str]:
    with gzip.open(corpora_root() / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


def test_the_default_model_learns_only_from_permissive_corpora() -> None:
    config = LocalModelConfig()
    assert set(config.corpora) == set(DEFAULT_CORPORA)
    assert not set(config.corpora) & NON_COMMERCIAL
    assert config.answers is not None and config.answers not in NON_COMMERCIAL
    for name in (*config.corpora, config.answers):
        assert (corpora_root() / f"{name}.jsonl.gz").is_file()


def test_script_of_a_prompt() -> None:
    assert [dominant_script(p) for p in WORLD[:4]] == ["LATIN", "CJK", "CJK", "CYRILLIC"]
    assert dominant_script("1 + 1 = ?") is None
    assert answers_in_script("Привет", "Как дела, 2?")
    assert not answers_in_script("Привет", "Hello")
    assert not answers_in_script("Hello", "   ")
    assert not answers_in_script("Hello", "42")  # no letter: in no language


def test_the_guard_holds_even_for_an_untrained_model() -> None:
    """The guarantee comes from the guard, not from training: a random model obeys it too."""
    _, tokenizer = load_default_model(progress=False)
    model = build_model(LocalModelConfig(n_layer=1, n_embd=32, n_head=2), len(tokenizer))
    for seed in (0, 1):
        got = answer(model, tokenizer, WORLD, seed=seed, max_new_tokens=24)
        bad = [(p, a) for p, a in zip(WORLD, got, strict=True) if not answers_in_script(p, a)]
        assert not bad, f"seed {seed}: {bad}"


def test_a_seeded_sample_of_every_permissive_corpus_gets_answers_in_its_script() -> None:
    model, tokenizer = load_default_model(progress=False)
    rng = random.Random(SEED)
    sample: list[str] = []
    for name in DEFAULT_CORPORA:
        texts = _corpus(name)
        sample += rng.sample(texts, 12)
        # every writing system the corpus has, not only its (mostly Latin) majority
        others = [t for t in texts if dominant_script(t) not in ("LATIN", None)]
        sample += rng.sample(others, min(4, len(others)))
    got = answer(model, tokenizer, sample, seed=0, max_new_tokens=32, batch_size=32)
    bad = [(p[:60], a) for p, a in zip(sample, got, strict=True) if not answers_in_script(p, a)]
    assert not bad, f"seed {SEED}: {bad}"
    assert len(set(got)) == len(got)  # not one canned reply


@pytest.mark.parametrize("prompt", ["Summarize the plot of Hamlet.", "请用中文回答：天空为什么是蓝色的？"])
def test_the_gateway_local_backend_answers_greedily_without_loops(prompt: str) -> None:
    upstream = LocalUpstream.default(progress=False)
    req = ChatRequest(api="chat.completions", model="distillguard-local",
                      messages=[Message("user", prompt)], max_tokens=48)
    assert _prompt_text(req) == chat_prompt(prompt)  # the turn the model was trained on
    reply: Any = upstream._generate(req, "acct")
    assert answers_in_script(prompt, reply.text)
    words = reply.text.split()
    # greedy decoding of a tiny model loops on a fragment unless n-grams may not repeat
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    assert len(set(trigrams)) == len(trigrams)
