"""Batched sampling from a local causal LM, with optional logits processors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict, Unpack


def generate_ids(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    min_new_tokens: int = 0,
    logits_processors: Sequence[Any] | None = None,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    batch_size: int = 16,
    repetition_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    guard: Any = None,
    guarded_texts: Sequence[str] | None = None,
) -> list[list[int]]:
    """Token ids of the continuation of each prompt (prompt excluded, padding removed).

    Prompts are left-padded and sampled in batches of `batch_size` through
    `model.generate`; `logits_processors` (e.g. a watermark's) run on every
    step. `seed` makes sampling reproducible without touching the caller's RNG.
    `repetition_penalty` and `no_repeat_ngram_size` are transformers' own. `guard`
    (`answer_guard(tokenizer)`) keeps each answer non-empty and in the script of
    `guarded_texts[i]` (default: the prompt itself).
    """
    import torch
    from transformers import LogitsProcessorList

    processors = LogitsProcessorList(list(logits_processors or []))
    eos = int(tokenizer.eos_token_id)
    max_prompt = int(model.config.n_positions) - max_new_tokens
    out: list[list[int]] = []
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            enc = tokenizer(
                chunk,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max(1, max_prompt),
                add_special_tokens=False,
            )
            if enc["input_ids"].shape[1] == 0:
                enc = tokenizer([tokenizer.eos_token] * len(chunk), return_tensors="pt")
            step_processors = processors
            if guard is not None:
                texts = list((guarded_texts or prompts)[start : start + batch_size])
                step_processors = LogitsProcessorList(
                    [*processors, guard(texts, int(enc["input_ids"].shape[1]))]
                )
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "min_new_tokens": min_new_tokens,
                "do_sample": do_sample,
                "pad_token_id": eos,
                "eos_token_id": eos,
                "logits_processor": step_processors,
            }
            if repetition_penalty is not None:
                kwargs["repetition_penalty"] = repetition_penalty
            if no_repeat_ngram_size is not None:
                kwargs["no_repeat_ngram_size"] = no_repeat_ngram_size
            if do_sample:
                kwargs["temperature"] = temperature
                kwargs["top_k"] = top_k if top_k > 0 else None
            res = model.generate(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs
            )
            new = res[:, enc["input_ids"].shape[1] :].tolist()
            for row in new:
                if eos in row:
                    row = row[: row.index(eos)]
                out.append([int(t) for t in row])
    return out


class SamplingOptions(TypedDict, total=False):
    """The keyword arguments of `generate_ids` (defaults there), forwarded by `generate`."""

    max_new_tokens: int
    min_new_tokens: int
    logits_processors: Sequence[Any] | None
    do_sample: bool
    temperature: float
    top_k: int
    seed: int | None
    batch_size: int
    repetition_penalty: float | None
    no_repeat_ngram_size: int | None
    guard: Any
    guarded_texts: Sequence[str] | None


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[str], **options: Unpack[SamplingOptions]
) -> list[str]:
    """The decoded continuation of each prompt; `options` as for `generate_ids`."""
    ids = generate_ids(model, tokenizer, prompts, **options)
    return [str(tokenizer.decode(row, skip_special_tokens=True)) for row in ids]


def chat_prompt(prompt: str, system: str | None = None) -> str:
    """A one-turn request as the local model reads it (the gateway's local backend writes the same)."""
    lines = [system] if system else []
    lines += [f"user: {prompt}", "assistant:"]
    return "\n".join(lines)


def answer(
    model: Any, tokenizer: Any, prompts: Sequence[str], *, seed: int | None = 0,
    max_new_tokens: int = 64, batch_size: int = 16,
) -> list[str]:
    """The local model's answer to each prompt: non-empty, in the prompt's script, not looping.

    The settings are the gateway local backend's (`ANSWER_SETTINGS`), with the answer guard.
    """
    from distillguard.localmodel._answer import (
        MIN_ANSWER_TOKENS,
        NO_REPEAT_NGRAM_SIZE,
        REPETITION_PENALTY,
        answer_guard,
    )

    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"  # a long prompt loses its start, never "assistant:"
    try:
        ids = generate_ids(
            model, tokenizer, [chat_prompt(p) for p in prompts], max_new_tokens=max_new_tokens,
            min_new_tokens=min(MIN_ANSWER_TOKENS, max_new_tokens), seed=seed,
            batch_size=batch_size, repetition_penalty=REPETITION_PENALTY,
            no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE, guard=answer_guard(tokenizer),
            guarded_texts=prompts,
        )
    finally:
        tokenizer.truncation_side = side
    # A character cut by max_new_tokens decodes as U+FFFD: drop it, keep the rest.
    return [str(tokenizer.decode(row, skip_special_tokens=True)).rstrip("\ufffd").strip()
            for row in ids]
