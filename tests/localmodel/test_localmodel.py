"""The local model: trained from a config, cached by its hash, sampled in batches."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from distillguard.localmodel import (
    LocalModelConfig,
    generate,
    generate_ids,
    load_default_model,
    model_path,
)


class _OnlyToken(LogitsProcessor):
    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = torch.full_like(scores, float("-inf"))
        out[:, self.token] = 0.0
        return out  # type: ignore[return-value]


def test_default_model_is_cached_and_small() -> None:
    model, tokenizer = load_default_model(progress=False)
    assert (model_path(LocalModelConfig()) / "done").exists()
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params < 2_000_000
    assert len(tokenizer) == LocalModelConfig().vocab_size
    # trained, not random: the corpora are far more likely than uniform tokens
    enc = tokenizer("Give three tips for staying healthy.", return_tensors="pt")
    with torch.no_grad():
        loss = float(model(**enc, labels=enc["input_ids"]).loss)
    assert loss < 0.8 * float(torch.log(torch.tensor(float(len(tokenizer)))))


def test_cache_key_changes_with_config() -> None:
    assert LocalModelConfig().cache_key() == LocalModelConfig().cache_key()
    assert LocalModelConfig(steps=1).cache_key() != LocalModelConfig().cache_key()


def test_generate_is_batched_seeded_and_honours_processors() -> None:
    model, tokenizer = load_default_model(progress=False)
    prompts = ["Give three tips for staying healthy.", "What is 2 + 2?", "Write a poem."]
    a = generate(model, tokenizer, prompts, max_new_tokens=20, min_new_tokens=20, seed=1)
    b = generate(model, tokenizer, prompts, max_new_tokens=20, min_new_tokens=20, seed=1)
    c = generate(model, tokenizer, prompts, max_new_tokens=20, min_new_tokens=20, seed=2)
    assert a == b and a != c and len(a) == 3
    # left padding does not change what a prompt gets: greedy in a batch == greedy alone
    greedy = generate(model, tokenizer, prompts, max_new_tokens=10, do_sample=False)
    alone = [generate(model, tokenizer, [p], max_new_tokens=10, do_sample=False)[0] for p in prompts]
    assert greedy == alone
    forced = int(tokenizer(" the", add_special_tokens=False)["input_ids"][0])
    ids = generate_ids(
        model, tokenizer, prompts[:2], max_new_tokens=5, logits_processors=[_OnlyToken(forced)], seed=0
    )
    assert ids == [[forced] * 5, [forced] * 5]
