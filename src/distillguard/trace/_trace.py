"""Tracing: is a text, a dataset or a model ours, and which accounts harvested it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

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

I64 = npt.NDArray[np.int64]

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


def _read_passes(
    model: Any, rows: list[list[int]], batch_size: int, pad: int, offsets: Sequence[int]
) -> list[torch.Tensor]:
    """Next-token log-probabilities at every position of each row, averaged over reading passes.

    Pass o reads each row from its o-th token on (pass 0: the whole row); a position is
    averaged over the passes that read it. The suspect's reading of a window then no longer
    hangs on one context: each pass sees a suffix of the same text, so the context stays
    text written before the window.
    """
    import torch

    if 0 not in offsets or min(offsets) < 0:
        raise ConfigError(
            f"Reading offsets {list(offsets)} must be >= 0 and include 0 (a pass over the whole text)."
        )
    total: list[torch.Tensor | None] = [None] * len(rows)
    reads = [torch.zeros(len(r), 1) for r in rows]
    for o in sorted(set(offsets)):
        keep = [i for i, r in enumerate(rows) if len(r) > o + 1]
        lps = _log_probs(model, [rows[i][o:] for i in keep], batch_size, pad)
        for i, lp in zip(keep, lps, strict=True):
            t = total[i]
            if t is None:
                t = total[i] = torch.zeros(len(rows[i]), lp.shape[-1])
            t[o:] += lp
            reads[i][o:] += 1
    return [t / n for t, n in zip(total, reads, strict=True) if t is not None]


def _first_windows(inputs: Sequence[Sequence[int]], h: int) -> tuple[I64, S.U64, I64, int]:
    """(windows, context ids, flat index of each window's last token, windows dropped).

    A window is read only at its *first* occurrence in each text. The text before it
    was then produced without the window's own green list (the generator only uses a
    window's list after the window appears), so under H0 (a suspect that never
    learned from this key) whatever the suspect names there is independent of that
    list, even when the reading texts are our own watermarked answers. Later
    occurrences come after text sampled with that list, which the suspect could copy
    in context; they are dropped.
    """
    flat, starts = flatten(inputs)
    # windows_of gives the h tokens before each index; the suspect's next-token
    # distribution after reading them sits at the index before (the window's last token)
    windows, idx = windows_of(np.append(flat, 0), starts, h)
    inside = idx < flat.size
    windows, idx = windows[inside], idx[inside]
    ctx = S.context_ids(windows)
    text = np.searchsorted(starts, idx - 1, side="right") - 1
    first = first_of_each(S.tuple_ids(ctx, text))
    return windows[first], ctx[first], idx[first] - 1, int(idx.size - first.size)


def open_tuples(inputs: Sequence[Sequence[int]], preds: Sequence[Sequence[int]], h: int) -> ScoredTuples:
    """(window of the input, the suspect's token after it) tuples, each scored once.

    Windows at their first occurrence per text (`_first_windows`); tuples repeated
    across texts count once.
    """
    windows, ctx, pos, dropped = _first_windows(inputs, h)
    pflat, _ = flatten(preds)
    return unique_tuples(ctx, windows, pflat[pos], tokens_seen=sum(map(len, inputs)), dropped_before=dropped)


# the contrast reads each text from these token offsets and averages each position over them
READING_OFFSETS = (0, 24, 64, 128)
# weight of a contrasted tuple: its gain's z-score within the window, in half units, times
# sqrt(reads of the window / median reads) kept within [1/2, 2], rounded and capped
_Z_STEPS = 2
_MAX_WEIGHT = 6
_READS_SCALE = (0.5, 2.0)


def contrast_tuples(
    inputs: Sequence[Sequence[int]],
    suspect: Sequence[torch.Tensor],
    reference: Sequence[torch.Tensor],
    h: int,
    *,
    top_k: int = 15,
    per_context: int | None = None,
    scale_by_reads: bool = True,
    pool: Literal["window", "top_k"] = "window",
) -> ScoredTuples:
    """Per context window, the tokens the suspect learned to prefer over the reference.

    Over every first occurrence of a window (`_first_windows`) the readings are pooled:
    with `pool="window"` a token's support is the suspect's probability summed over the
    occurrences and its gain the mean log-probability ratio suspect / reference over all
    of them; with `pool="top_k"` (the earlier rule) both count only the occurrences where
    the token is among the suspect's `top_k`. Each of the window's `top_k` best-supported
    tokens is scored with an integer weight: its gain's z-score among them in half units,
    times sqrt(reads / median reads) of the window (kept within [1/2, 2]; `scale_by_reads`),
    rounded and capped at 12 (6 unscaled); tokens of weight 0 are not scored. A window read
    n times pools n readings, so its z-score carries about sqrt(n) times the evidence:
    this is the linear statistic a green-list bias calls for, and the weighted count's
    tail stays exact (`weighted_binom_logsf`). With `per_context`, the `per_context`
    tokens of largest gain are scored instead, unweighted (the first rule).
    Averaging over occurrences cancels what the two models disagree on at random and
    keeps a bias a student learned for the window itself, which is what a green list
    teaches. Every choice depends on the models and the text only, so under H0 each
    (window, token) tuple is green with probability gamma, whatever its weight.
    """
    import torch

    windows, ctx, pos, dropped = _first_windows(inputs, h)
    if not pos.size:
        return unique_tuples(ctx, windows, pos, tokens_seen=0, dropped_before=dropped)
    lp = torch.cat(list(suspect))[torch.from_numpy(pos)]
    gain_all = lp - torch.cat(list(reference))[torch.from_numpy(pos)]
    k = min(top_k, lp.shape[-1])
    _, first_at, group = np.unique(ctx, return_index=True, return_inverse=True)
    if pool == "window":
        # every token over every occurrence of the window: support summed, gain averaged
        g = torch.from_numpy(group)
        n_win = int(first_at.size)
        sup_w = torch.zeros(n_win, lp.shape[-1], dtype=torch.float64)
        sup_w.index_add_(0, g, lp.double().exp())
        gain_w = torch.zeros_like(sup_w).index_add_(0, g, gain_all.double())
        top_w = sup_w.topk(k, dim=-1)
        owner = np.repeat(np.arange(n_win, dtype=np.int64), k)
        tok = top_w.indices.numpy().astype(np.int64).ravel()
        sup = top_w.values.numpy().ravel()
        mean_gain = (gain_w.gather(-1, top_w.indices).numpy() / np.bincount(group)[:, None]).ravel()
    else:
        # a token counts at the occurrences where it is among the suspect's top k
        top = lp.topk(k, dim=-1)
        tokens = top.indices.numpy().astype(np.int64)  # (n, k)
        support = top.values.exp().numpy().astype(np.float64)
        gain = gain_all.gather(-1, top.indices).numpy().astype(np.float64)
        pair = group[:, None].astype(np.int64) * (int(tokens.max()) + 1) + tokens  # (window, token) pairs
        _, at, inv = np.unique(pair.ravel(), return_index=True, return_inverse=True)
        sup = np.bincount(inv, weights=support.ravel()).astype(np.float64)
        mean_gain = (np.bincount(inv, weights=gain.ravel()) / np.bincount(inv)).astype(np.float64)
        owner = group[at // tokens.shape[1]]
        tok = tokens.ravel()[at]

    def best(score: npt.NDArray[np.float64], keep: npt.NDArray[np.bool_], n: int) -> npt.NDArray[np.bool_]:
        """The n highest `score` among `keep`, per window."""
        order = np.lexsort((-score, owner))
        order = order[keep[order]]
        starts = np.searchsorted(owner[order], owner[order], side="left")
        chosen = np.zeros(owner.size, dtype=bool)
        chosen[order[np.arange(order.size) - starts < n]] = True
        return chosen

    candidates = best(sup, np.ones(owner.size, dtype=bool), top_k)
    weights: I64 | None = None
    if per_context is not None:
        chosen = best(mean_gain, candidates, per_context)
    else:
        if scale_by_reads:
            scale, cap = _reads_scale(np.bincount(group)), round(_MAX_WEIGHT * _READS_SCALE[1])
        else:
            scale, cap = np.ones(first_at.size), _MAX_WEIGHT
        w = _z_weights(owner[candidates], mean_gain[candidates], scale, cap)
        chosen = np.zeros(owner.size, dtype=bool)
        chosen[np.flatnonzero(candidates)[w > 0]] = True
        weights = w[w > 0]
    rep = first_at[owner[chosen]]  # one occurrence of each window stands for it
    return unique_tuples(
        ctx[rep],
        windows[rep],
        tok[chosen],
        tokens_seen=sum(map(len, inputs)),
        dropped_before=dropped,
        weights=weights,
    )


def _reads_scale(reads: I64) -> npt.NDArray[np.float64]:
    """sqrt(reads / median reads) per window, kept within `_READS_SCALE`.

    A window read at n first occurrences pools n readings of the suspect: evidence that
    adds up like a sum of n independent readings, whose z-score grows as sqrt(n).
    """
    lo, hi = _READS_SCALE
    return np.clip(np.sqrt(reads / float(np.median(reads))), lo, hi)


def _z_weights(
    owner: I64, gain: npt.NDArray[np.float64], scale: npt.NDArray[np.float64], cap: int
) -> I64:
    """round(2 z scale[window]) capped to [0, cap], z the gain's z-score among its window's candidates."""
    n = np.bincount(owner).astype(np.float64)
    mean = np.bincount(owner, weights=gain) / np.maximum(n, 1.0)
    dev = gain - mean[owner]
    sd = np.sqrt(np.bincount(owner, weights=dev * dev) / np.maximum(n, 1.0))[owner]
    z = np.divide(dev, sd, out=np.zeros_like(dev), where=sd > 0)
    return np.clip(np.round(_Z_STEPS * z * scale[owner]), 0, cap).astype(np.int64)


def radioactivity_open(
    key: WatermarkKey,
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    reference: Any | Sequence[Any] | None = None,
    top_k: int = 15,
    per_context: int | None = None,
    scale_by_reads: bool = True,
    pool: Literal["window", "top_k"] = "window",
    offsets: Sequence[int] = READING_OFFSETS,
    account: str | None = None,
    alpha: float = 1e-6,
    batch_size: int = 16,
    max_len: int | None = None,
    subject: str = "local model",
) -> TraceReport:
    """Open-model radioactivity test (teacher forcing, after Sander et al. 2024).

    The suspect reads `texts`, best our own watermarked answers (what the harvesting
    accounts received): a student that learned from them leans, after their windows,
    towards the tokens the key made green. Windows count at their first occurrence in
    each text, so reading marked text keeps the test exact. Without `reference` the
    suspect's greedy token after each window is scored (`open_tuples`); with
    `reference` (a model that never saw text marked with this key, same tokenizer) the
    top-`top_k` tokens of each window, weighted by how much more the suspect prefers
    them than the reference does (`contrast_tuples`), which finds a student trained on
    a few percent of marked text. Both models read each text from every token offset in
    `offsets` (`_read_passes`; each position averaged over the passes that read it, so a
    window's reading hangs less on one context). The closer the reference is to the
    suspect apart from the key, the stronger the test: best models of the suspect's kind
    distilled from our own *unmarked* answers (a sequence of models: their
    log-probabilities are averaged; four did better than two), else our unwatermarked
    teacher. With `account` (the
    account the reading texts were served to, e.g. the one `trace text` attributed), the
    tuples are also scored under that account's layer, which the student learned too.
    Under H0 (the suspect never learned from text marked with this key) the p-value is exact.
    """
    limit = max_len or int(getattr(model.config, "n_positions", 512))
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    rows = [list(r)[:limit] for r in enc if len(r) >= 2]
    if not rows:
        raise ConfigError("No text long enough (2 tokens) to read the model with.")
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    if reference is None:
        suspect = _log_probs(model, rows, batch_size, pad)
        preds = [lp.argmax(dim=-1).tolist() for lp in suspect]
        det = detect_tuples(key, lambda h: open_tuples(rows, preds, h), alpha=alpha, served_account=account)
        how = "its greedy token after each window"
    else:
        refs = list(reference) if isinstance(reference, (list, tuple)) else [reference]
        suspect = _read_passes(model, rows, batch_size, pad, offsets)
        each = [_read_passes(r, rows, batch_size, pad, offsets) for r in refs]
        ref = [sum(lps[1:], lps[0]) / len(lps) for lps in zip(*each, strict=True)]
        det = detect_tuples(
            key,
            lambda h: contrast_tuples(
                rows, suspect, ref, h, top_k=top_k, per_context=per_context,
                scale_by_reads=scale_by_reads, pool=pool,
            ),
            alpha=alpha,
            served_account=account,
        )
        how = (
            f"per window, the {per_context} of its top-{top_k} tokens it prefers most over the reference"
            if per_context is not None
            else f"per window, its top-{top_k} tokens weighted by how much more it prefers them than "
            "the reference (z-score in half units"
            + (", times sqrt(reads / median reads), 1..12)" if scale_by_reads else ", 1..6)")
        )
        if len(set(offsets)) > 1:
            how += f"; each text read from token offsets {sorted(set(offsets))}"
    det.layer = "open-model"
    notes = [f"teacher-forced on {len(rows)} texts, each window at its first occurrence per text; {how}"]
    if account is not None:
        notes.append(f"tuples also scored under the layer of account {account!r}, the texts' recipient")
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
