"""Scrubbing attacks an operator runs on harvested answers or on a student, as code an evaluator runs.

- `paraphrase_rules`: rewording by rules, before training: every synonym, spelling and
  contraction group of the shipped lexicon re-chosen at random (the lexicon is public; the key
  is not, so the attacker's choice is independent of it), sentences reordered within a line,
  punctuation normalised.
- `paraphrase_resample`: a fraction of each answer's tokens resampled from a language model
  (teacher-forced: each resampled token is drawn given the original text before it).
- `estimate_neutraliser` / `NeutralisingProcessor` / `NeutralisedModel`: Pan et al. 2025
  (arXiv 2502.11598) inference-time watermark neutralisation: the bias a student inherited is
  estimated from the student's own outputs against a reference model, per context token, and
  subtracted from the student's logits.

The attacker holds no key: nothing here takes one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from distillguard._errors import ConfigError
from distillguard.watermark._lexical import _ScanState, scan

# A sentence ends at . ! or ? followed by space and a capital letter.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Characters a normaliser maps to plain ASCII (what copy-paste tools and cleaning scripts do).
PUNCTUATION_MAP = {
    "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": " - ",
    "\u2026": "...", "\u00a0": " ",
}
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([,.;:!?])")
_RUNS_OF_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True)
class RuleParaphrase:
    """How often each rule fires: a lexicon choice is re-drawn, a line's sentences shuffled."""

    swap_rate: float = 0.5
    reorder_rate: float = 0.5
    normalise: bool = True

    def __post_init__(self) -> None:
        bad = [f"{n}={v}" for n, v in (("swap_rate", self.swap_rate), ("reorder_rate", self.reorder_rate))
               if not 0.0 <= v <= 1.0]
        if bad:
            raise ConfigError(f"RuleParaphrase rates must be within [0, 1]: {', '.join(bad)}.")


def normalise_punctuation(text: str) -> str:
    """Curly quotes, dashes, ellipses and no-break spaces to ASCII; spaces before punctuation dropped."""
    for a, b in PUNCTUATION_MAP.items():
        text = text.replace(a, b)
    return _RUNS_OF_SPACES.sub(" ", _SPACE_BEFORE_PUNCT.sub(r"\1", text))


def reorder_sentences(line: str, rng: random.Random) -> str:
    """The line's sentences in a random order (a line of one sentence is returned as is)."""
    parts = _SENTENCE_END.split(line)
    if len(parts) < 2:
        return line
    rng.shuffle(parts)
    return " ".join(parts)


def paraphrase_rules(text: str, seed: int, rules: RuleParaphrase | None = None) -> str:
    """`text` reworded by rules, the same for the same seed (see the module docstring)."""
    rules = rules or RuleParaphrase()
    rng = random.Random(seed)

    def redraw(prev: str, group: int, member: int) -> int | None:
        return rng.randrange(2) if rng.random() < rules.swap_rate else None

    text = scan(text, _ScanState(), redraw)
    lines = [reorder_sentences(x, rng) if rng.random() < rules.reorder_rate else x for x in text.split("\n")]
    text = "\n".join(lines)
    return normalise_punctuation(text) if rules.normalise else text


def paraphrase_resample(
    model: Any,
    tokenizer: Any,
    prefixes: Sequence[str],
    texts: Sequence[str],
    *,
    rate: float,
    seed: int,
    temperature: float = 1.0,
) -> list[str]:
    """Each text with a `rate` share of its tokens drawn afresh from `model` given `prefix + text` before it.

    One teacher-forced pass per text: the drawn token depends on the original tokens before it,
    so a resampled token breaks every context window it is part of; the others keep theirs.
    """
    import torch

    if not 0.0 <= rate <= 1.0 or temperature <= 0:
        raise ConfigError(f"resampling needs 0 <= rate <= 1 and temperature > 0 (got {rate}, {temperature}).")
    gen = torch.Generator().manual_seed(seed)
    limit = int(model.config.n_positions)
    out: list[str] = []
    with torch.inference_mode():
        for prefix, text in zip(prefixes, texts, strict=True):
            pre = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            ans = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = (pre + ans)[-limit:]
            n_ans = min(len(ans), len(ids) - 1)
            if n_ans <= 0:
                out.append(text)
                continue
            logits = model(input_ids=torch.tensor([ids])).logits[0, -n_ans - 1 : -1].float()
            drawn = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=gen)[:, 0]
            swap = torch.rand(n_ans, generator=gen) < rate
            tail = torch.tensor(ids[-n_ans:])
            new = ans[: len(ans) - n_ans] + torch.where(swap, drawn, tail).tolist()
            out.append(str(tokenizer.decode(new)))
    return out


def bigram_log_ratio(student_lp: Any, reference_lp: Any, prev: Any, vocab: int) -> Any:
    """Mean of log p_student - log p_reference per previous token (rows), centred per row.

    `student_lp`, `reference_lp`: (n, V) next-token log-probabilities at n positions; `prev`:
    (n,) the token before each. Rows never seen stay 0. Centring keeps only what the student
    prefers *relative to* other tokens after the same context, which is what a green list adds.
    """
    import torch

    diff = (student_lp - reference_lp).double()
    total = torch.zeros(vocab, diff.shape[-1], dtype=torch.float64).index_add_(0, prev, diff)
    seen = torch.bincount(prev, minlength=vocab).double()[:, None]
    mean = torch.where(seen > 0, total / seen.clamp(min=1.0), torch.zeros_like(total))
    return (mean - mean.mean(dim=-1, keepdim=True)) * (seen > 0)


def estimate_neutraliser(
    student: Any,
    reference: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    strength: float = 1.0,
    batch_size: int = 16,
) -> Any:
    """The (V, V) bias table a neutraliser subtracts: `strength` x `bigram_log_ratio` over `texts`.

    `texts` are the student's own outputs (prompt included); both models read them. Pan et al.
    estimate the green list from n-gram frequencies of the student's outputs against a
    reference; reading both models' full next-token distributions at every position is the
    same estimate with less noise. The whole centred ratio is subtracted (not only its positive
    part, the tokens it calls green): that maps a pure per-context bias back to the reference
    exactly, whatever the bias' size.
    """
    import torch

    from distillguard.trace._trace import _log_probs

    rows = [list(r)[: int(student.config.n_positions)] for r in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        raise ConfigError("No text long enough (2 tokens) to estimate a neutraliser from.")
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    s = torch.cat([lp[:-1] for lp in _log_probs(student, rows, batch_size, pad)])
    r = torch.cat([lp[:-1] for lp in _log_probs(reference, rows, batch_size, pad)])
    prev = torch.tensor([t for row in rows for t in row[:-1]])
    return (strength * bigram_log_ratio(s, r, prev, s.shape[-1])).float()


class NeutralisingProcessor:
    """A transformers `LogitsProcessor`: subtracts `bias[last token]` from the scores."""

    def __init__(self, bias: Any) -> None:
        self.bias = bias

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return scores - self.bias[input_ids[:, -1]].to(scores.dtype)


@dataclass
class _Output:
    logits: Any


class NeutralisedModel:
    """A causal LM whose logits at each position have `bias[token there]` subtracted.

    What an operator serving the neutralised student exposes; the open-model test reads it
    like any model (`model(input_ids=..., attention_mask=...).logits`, `model.config`).
    """

    def __init__(self, model: Any, bias: Any) -> None:
        self.model = model
        self.bias = bias
        self.config = model.config

    def __call__(self, input_ids: Any, attention_mask: Any | None = None) -> _Output:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return _Output(logits - self.bias[input_ids].to(logits.dtype))
