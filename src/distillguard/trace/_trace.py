"""Tracing: is a text, a dataset or a model ours, and which accounts harvested it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from distillguard._errors import ConfigError
from distillguard.trace._report import TraceReport
from distillguard.watermark import (
    Detection,
    ScoredTuples,
    WatermarkDetector,
    WatermarkKey,
    collect_tuples,
    detect_lexical,
    detect_tuples,
)
from distillguard.watermark import _seeding as S
from distillguard.watermark._scheme import windows_of


def trace_texts(
    key: WatermarkKey,
    texts: Sequence[str],
    *,
    tokenizer: Any | None = None,
    prompts: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
    alpha: float = 1e-6,
    lexical: bool = True,
    subject: str = "texts",
) -> TraceReport:
    """Score texts with the token layer (through `tokenizer`) and the lexical layer.

    Tuples that also occur in `prompts` are dropped from the token layer.
    """
    layers: list[Detection] = []
    notes: list[str] = []
    if tokenizer is not None:
        layers.append(
            WatermarkDetector(key, tokenizer).detect_texts(
                texts, prompts=prompts, candidates=candidates, alpha=alpha
            )
        )
    else:
        notes.append("no tokenizer given: the generation-time layer was not scored")
    if lexical:
        layers.append(detect_lexical(key, texts, candidates=candidates, alpha=alpha))
    if not layers:
        raise ConfigError("Nothing to score: give a tokenizer or enable the lexical layer.")
    if candidates is None:
        notes.append("no candidate accounts given (--accounts): accounts are not searched")
    return TraceReport(subject=subject, layers=layers, alpha=alpha, notes=notes)


def _predictions(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int, max_len: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Input tokens and the model's greedy next-token prediction at every position."""
    import torch

    inputs: list[list[int]] = []
    preds: list[list[int]] = []
    enc_all = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    rows = [list(r)[:max_len] for r in enc_all if len(r) >= 2]
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    with torch.inference_mode():
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo : lo + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, r in enumerate(chunk):  # right padding: positions stay aligned
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits
            best = logits.argmax(dim=-1)
            for i, r in enumerate(chunk):
                inputs.append(r)
                preds.append(best[i, : len(r)].tolist())
    return inputs, preds


def _open_tuples(inputs: list[list[int]], preds: list[list[int]], h: int) -> ScoredTuples:
    """(window of the input, predicted next token) tuples, once each, minus the input's own."""
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in inputs])
    pflat = np.concatenate([np.asarray(p, dtype=np.int64) for p in preds])
    lengths = np.array([len(r) for r in inputs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    # window ending at flat[j] (inclusive) predicts pflat[j]: shift by one
    windows, idx = windows_of(np.concatenate([flat, [0]]), starts, h)
    idx_ok = idx < flat.size
    windows, idx = windows[idx_ok], idx[idx_ok]
    # windows_of gives the h tokens *before* idx; the prediction made after them is pflat[idx - 1]
    tokens = pflat[idx - 1]
    ctx = S.context_ids(windows)
    tid = S.tuple_ids(ctx, tokens)
    _, first = np.unique(tid, return_index=True)
    keep = np.sort(first)
    own = collect_tuples(inputs, h)
    own_ids = S.tuple_ids(own.ctx_ids, own.tokens)
    inside = np.isin(tid[keep], own_ids)
    dropped_prompt = int(inside.sum())
    keep = keep[~inside]
    return ScoredTuples(
        ctx_ids=ctx[keep],
        windows=windows[keep],
        tokens=tokens[keep],
        tokens_seen=int(flat.size),
        dropped_repeats=int(tid.size - first.size),
        dropped_prompt=dropped_prompt,
    )


def radioactivity_open(
    key: WatermarkKey,
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    alpha: float = 1e-6,
    batch_size: int = 16,
    max_len: int | None = None,
    subject: str = "local model",
) -> TraceReport:
    """Open-model radioactivity test (teacher forcing, after Sander et al. 2024).

    The suspect model reads `texts`; at each position its greedy prediction forms a
    (context window, predicted token) tuple, scored with the key like generated
    text. Each tuple counts once, and tuples that occur in the texts themselves are
    dropped, so a model that merely copies its input adds nothing. Under H0 (the
    model never learned from text marked with this key) its predictions are
    independent of the key and the p-value is exact.
    """
    limit = max_len or int(getattr(model.config, "n_positions", 512))
    inputs, preds = _predictions(model, tokenizer, texts, batch_size, limit)
    if not inputs:
        raise ConfigError("No text long enough (2 tokens) to read the model with.")
    det = detect_tuples(key, lambda h: _open_tuples(inputs, preds, h), alpha=alpha)
    det.layer = "open-model"
    notes = [f"teacher-forced on {len(inputs)} texts, greedy predictions scored"]
    return TraceReport(subject=subject, layers=[det], alpha=alpha, notes=notes)


def query_openai_compatible(
    endpoint: str,
    model: str,
    prompts: Sequence[str],
    *,
    api_key: str | None = None,
    max_tokens: int = 128,
    temperature: float = 1.0,
    client: Any | None = None,
) -> list[str]:
    """Answers of an OpenAI-compatible chat endpoint (`{endpoint}/chat/completions`)."""
    import httpx

    from distillguard._errors import DistillguardError

    own = client is None
    http = client or httpx.Client(timeout=120.0)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = endpoint.rstrip("/") + "/chat/completions"
    answers: list[str] = []
    try:
        for prompt in prompts:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": temperature,
            }
            try:
                resp = http.post(url, json=body, headers=headers)
                resp.raise_for_status()
                answers.append(str(resp.json()["choices"][0]["message"]["content"] or ""))
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                raise DistillguardError(
                    f"The suspect endpoint {url} failed on a prompt ({exc!r}); check the URL, "
                    "model name and API key."
                ) from exc
    finally:
        if own:
            http.close()
    return answers


def radioactivity_closed(
    key: WatermarkKey,
    answers: Sequence[str],
    prompts: Sequence[str],
    *,
    tokenizer: Any | None,
    alpha: float = 1e-6,
    subject: str = "endpoint",
) -> TraceReport:
    """Closed-model radioactivity test: score the suspect's answers, prompt windows dropped."""
    report = trace_texts(
        key, answers, tokenizer=tokenizer, prompts=prompts, alpha=alpha, subject=subject
    )
    report.notes = [n for n in report.notes if "candidate" not in n]
    report.notes.append(f"{len(answers)} answers of the suspect scored")
    return report


def bonferroni(log10_ps: Sequence[float]) -> float:
    """Combined log10 p-value of several tests: the smallest times their number."""
    return min(0.0, min(log10_ps) + math.log10(len(log10_ps))) if log10_ps else 0.0
