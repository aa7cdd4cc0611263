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
) -> list[list[int]]:
    """Token ids of the continuation of each prompt (prompt excluded, padding removed).

    Prompts are left-padded and sampled in batches of `batch_size` through
    `model.generate`; `logits_processors` (e.g. a watermark's) run on every
    step. `seed` makes sampling reproducible without touching the caller's RNG.
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
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "min_new_tokens": min_new_tokens,
                "do_sample": do_sample,
                "pad_token_id": eos,
                "eos_token_id": eos,
                "logits_processor": processors,
            }
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


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[str], **options: Unpack[SamplingOptions]
) -> list[str]:
    """The decoded continuation of each prompt; `options` as for `generate_ids`."""
    ids = generate_ids(model, tokenizer, prompts, **options)
    return [str(tokenizer.decode(row, skip_special_tokens=True)) for row in ids]
