"""Tracing: is a text, a dataset or a model ours, and which accounts harvested it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from distillguard._errors import ConfigError
from distillguard.trace._report import TraceReport
from distillguard.watermark import (
    Detection,
    ScoredTuples,
    WatermarkDetector,
    WatermarkKey,
    detect_lexical,
    detect_tuples,
)
from distillguard.watermark import _seeding as S
from distillguard.watermark._detect import first_of_each, flatten, unique_tuples
from distillguard.watermark._scheme import windows_of

if TYPE_CHECKING:
    import torch


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


def _log_probs(model: Any, rows: list[list[int]], batch_size: int, pad: int) -> list[torch.Tensor]:
    """Next-token log-probabilities of `model` at every position of each row."""
    import torch

    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo : lo + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, r in enumerate(chunk):  # right padding: positions stay aligned
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            out.extend(logp[i, : len(r)] for i, r in enumerate(chunk))
    return out


def _predictions(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    reference: Any | None,
    top_k: int,
    batch_size: int,
    max_len: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """Input tokens and, at every position, the token the suspect is scored on.

    Without a reference: the suspect's greedy prediction. With one: among the
    suspect's `top_k` most likely next tokens, the one it prefers most over the
    reference (largest log-probability ratio), which cancels what both models know of
    the language and leaves what the suspect learned beyond it. Either choice depends
    on the models and the text only, never on the key.
    """
    enc_all = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    rows = [list(r)[:max_len] for r in enc_all if len(r) >= 2]
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    suspect = _log_probs(model, rows, batch_size, pad)
    if reference is None:
        return rows, [lp.argmax(dim=-1).tolist() for lp in suspect]
    preds = []
    for lp, ref in zip(suspect, _log_probs(reference, rows, batch_size, pad), strict=True):
        top = lp.topk(min(top_k, lp.shape[-1]), dim=-1).indices  # (n, k)
        gain = (lp - ref).gather(-1, top)
        preds.append(top.gather(-1, gain.argmax(dim=-1, keepdim=True))[:, 0].tolist())
    return rows, preds


def open_tuples(inputs: Sequence[Sequence[int]], preds: Sequence[Sequence[int]], h: int) -> ScoredTuples:
    """(window of the input, the suspect's token after it) tuples, each scored once.

    A window is read only at its *first* occurrence in each text. The text before it
    was then produced without the window's own green list (the generator only uses a
    window's list after the window appears), so under H0 (a suspect that never
    learned from this key) the scored token is independent of that list, even when
    the reading texts are our own watermarked answers. Later occurrences come after
    text sampled with that list, which the suspect could copy in context; they are
    dropped (counted as repeats). Tuples repeated across texts count once.
    """
    flat, starts = flatten(inputs)
    pflat, _ = flatten(preds)
    # windows_of gives the h tokens before each index; the suspect's token after reading
    # them is its prediction at the index before (the window's last token)
    windows, idx = windows_of(np.append(flat, 0), starts, h)
    inside = idx < flat.size
    windows, idx = windows[inside], idx[inside]
    ctx = S.context_ids(windows)
    text = np.searchsorted(starts, idx - 1, side="right") - 1
    first = first_of_each(S.tuple_ids(ctx, text))
    return unique_tuples(
        ctx[first],
        windows[first],
        pflat[idx[first] - 1],
        tokens_seen=int(flat.size),
        dropped_before=int(idx.size - first.size),
    )


def radioactivity_open(
    key: WatermarkKey,
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    reference: Any | None = None,
    top_k: int = 10,
    alpha: float = 1e-6,
    batch_size: int = 16,
    max_len: int | None = None,
    subject: str = "local model",
) -> TraceReport:
    """Open-model radioactivity test (teacher forcing, after Sander et al. 2024).

    The suspect reads `texts`, best our own watermarked answers (what the harvesting
    accounts received): where a student memorised marked text, its next token repeats
    the marked choice. At the first occurrence of each window in each text the
    suspect's token (greedy, or with `reference` = our own unwatermarked model, the
    top-`top_k` token it prefers most over the reference) forms a (window, token)
    tuple, scored once with the key like generated text (`open_tuples`). Under H0
    (the suspect never learned from text marked with this key) the p-value is exact.
    """
    limit = max_len or int(getattr(model.config, "n_positions", 512))
    inputs, preds = _predictions(
        model, tokenizer, texts, reference=reference, top_k=top_k, batch_size=batch_size, max_len=limit
    )
    if not inputs:
        raise ConfigError("No text long enough (2 tokens) to read the model with.")
    det = detect_tuples(key, lambda h: open_tuples(inputs, preds, h), alpha=alpha)
    det.layer = "open-model"
    how = (
        f"its top-{top_k} token most above the reference model" if reference is not None else "its greedy token"
    )
    notes = [f"teacher-forced on {len(inputs)} texts; each window's first occurrence per text, {how}"]
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
