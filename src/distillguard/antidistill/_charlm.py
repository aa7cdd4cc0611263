"""A tiny character-level causal LM for the testbed: built from a config, trained in seconds.

The tasks' alphabet has a few dozen characters, so a character vocabulary keeps the model
small and makes every answer's tokens exact (no tokenizer boundary effects between teacher,
defence and student).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ALPHABET = "\n0123456789+=:;ACQ |,[]@abcdefghijklmnopqrstuvwxyz*->"
EOS = "\n"  # index 0; also the padding token


@dataclass(frozen=True)
class LMConfig:
    """Shape and training of one model (teacher, proxy or student)."""

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 96
    n_positions: int = 256  # the longest rewritten 4-digit answer is about 150 characters
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 3e-3


def encode(text: str) -> list[int]:
    try:
        return [ALPHABET.index(ch) for ch in text]
    except ValueError as exc:
        bad = next(ch for ch in text if ch not in ALPHABET)
        raise ValueError(f"character {bad!r} is outside the testbed's alphabet (in {text!r:.80})") from exc


def decode(ids: Sequence[int]) -> str:
    return "".join(ALPHABET[i] for i in ids)


def build(cfg: LMConfig, seed: int) -> Any:
    """A fresh GPT-2 shaped model over the alphabet."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    conf = GPT2Config(vocab_size=len(ALPHABET), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
                      n_layer=cfg.n_layer, n_head=cfg.n_head, bos_token_id=0, eos_token_id=0)
    model: Any = GPT2LMHeadModel(conf)
    return model.eval()


def _batch(pairs: Sequence[tuple[str, str]], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and labels that score only the answer and its end mark."""
    rows = [(encode(pairs[i][0]), encode(pairs[i][1] + EOS)) for i in idx]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (p, a) in enumerate(rows):
        ids[r, : len(p) + len(a)] = torch.tensor(p + a)
        labels[r, len(p) : len(p) + len(a)] = torch.tensor(a)
    return ids, labels


def train(model: Any, pairs: Sequence[tuple[str, str]], cfg: LMConfig, seed: int,
          progress: Callable[[int, float], None] | None = None) -> Any:
    """Fit `model` to (prompt, answer) pairs: cross-entropy on the answer, AdamW, cosine decay."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, cfg.steps))
    model.train()
    for step in range(cfg.steps):
        ids, labels = _batch(pairs, rng.integers(0, len(pairs), cfg.batch_size))
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress is not None and (step + 1) % 100 == 0:
            progress(step + 1, float(loss.detach()))
    return model.eval()


def lr_factor(step: int, total: int, warmup_share: float = 0.1) -> float:
    """Linear warm-up over the first `warmup_share` of the steps, then cosine decay to zero."""
    warm = max(1, int(total * warmup_share))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


LogitsHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def generate(model: Any, prompts: Sequence[str], max_new: int, *, greedy: bool = True,
             seed: int = 0, hook: LogitsHook | None = None, batch_size: int = 256,
             temperature: float = 1.0, answer_start: str | None = None) -> list[str]:
    """Continuations of prompts of one length (the task's prompts are), stopped at the end mark.

    Sampling (`greedy=False`) draws from softmax(logits / temperature). `hook(ids, logits) ->
    logits` may change each step's next-token logits (antidistillation sampling does); it
    gets them divided by the temperature. With `answer_start` (the first character of the
    answer mark, which no reasoning contains) a row's answer, from that character on, is the
    model's own greedy choice with no hook: the tilt and the sampling shape the reasoning only.
    """
    gen = torch.Generator().manual_seed(seed)
    start_id = encode(answer_start)[0] if answer_start else None
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = torch.tensor([encode(p) for p in chunk])
        done = torch.zeros(len(chunk), dtype=torch.bool)
        answering = torch.zeros(len(chunk), dtype=torch.bool)
        new: list[torch.Tensor] = []
        with torch.inference_mode():
            # answers are a few dozen characters: a full forward pass per step is cheap and needs
            # no cache API (which differs across transformers versions)
            for _ in range(max_new):
                full = torch.cat([ids, torch.stack(new, dim=1)], dim=1) if new else ids
                raw = model(input_ids=full).logits[:, -1, :].float()
                logits = raw if greedy else raw / temperature
                if hook is not None:
                    logits = hook(full, logits)
                if greedy:
                    nxt = logits.argmax(dim=-1)
                else:
                    nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
                if start_id is not None:
                    nxt = torch.where(answering, raw.argmax(dim=-1), nxt)
                    answering |= nxt == start_id
                nxt = torch.where(done, torch.zeros_like(nxt), nxt)
                new.append(nxt)
                done |= nxt == 0
                if bool(done.all()):
                    break
        cols = torch.stack(new, dim=1).tolist() if new else [[] for _ in chunk]
        for row in cols:
            text = decode(row)
            out.append(text.split(EOS, 1)[0])
    return out
