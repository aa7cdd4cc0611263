"""Antidistillation sampling (Savani et al. 2025, arXiv 2504.13146) on a small teacher.

The teacher's next-token logits are tilted towards tokens that would *raise* a proxy
student's loss on the task if the student trained on them:

    z'(x) = z_T(x) / tau + lambda * Delta(x),
    Delta(x) = (log p_{theta + eps g}(x | prefix) - log p_{theta - eps g}(x | prefix)) / (2 eps),

where theta are the proxy student's weights and g = grad L(theta) is the gradient of its
loss on correct worked examples (unit-normalised, so eps is a step length in weight space).
Delta(x) is the central difference of <grad log p_theta(x), g>: to first order the increase
in that loss after one gradient step on x, so two forward passes of the proxy per token
stand in for the expensive look-ahead. The hook adds lambda * Delta to the logits it is given
and then keeps the nucleus (`ADSConfig.top_p`) of the *tilted* distribution, as the authors'
code does (their processor runs before transformers' top-p warper): a nucleus taken from the
teacher alone would, for a confident teacher, hold one token at almost every step and leave
the tilt nothing to choose. The temperature and which tokens are tilted are the sampler's
(`distillguard.antidistill._charlm.generate` can write the final answer greedily without a
tilt, as the paper's answer forcing does).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from distillguard.antidistill import _charlm as lm


@dataclass(frozen=True)
class ADSConfig:
    """lam: strength of the tilt (0 = plain teacher); eps: finite-difference step (the
    gradient is unit-norm, so a distance in weight space); top_p: sampling keeps the nucleus
    of the tilted distribution, the fewest most likely tokens whose probability reaches
    `top_p` (1 = every token); temperature: the teacher's sampling temperature under the tilt
    (in the testbed)."""

    lam: float = 2.0
    eps: float = 1e-2
    top_p: float = 0.95
    temperature: float = 1.0


def loss_gradient(proxy: Any, pairs: Sequence[tuple[str, str]], batch: int = 256) -> list[torch.Tensor]:
    """Unit-norm gradient of the proxy's answer loss on `pairs` (its downstream task)."""
    proxy.zero_grad()
    ids, labels = lm._batch(pairs, np.arange(min(batch, len(pairs))))
    proxy.train()
    proxy(input_ids=ids, labels=labels).loss.backward()
    proxy.eval()
    return _unit(proxy)


def text_gradient(proxy: Any, rows: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Unit-norm gradient of the proxy's language-model loss on token rows (its downstream
    task: texts of the kind a distiller wants to learn, e.g. worked answers)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r))
        labels[i, : len(r)] = torch.tensor(list(r))
    proxy.zero_grad()
    proxy.train()
    proxy(input_ids=ids, labels=labels).loss.backward()
    proxy.eval()
    return _unit(proxy)


def _unit(proxy: Any) -> list[torch.Tensor]:
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in proxy.parameters()]
    norm = torch.sqrt(torch.stack([(g.double() ** 2).sum() for g in grads]).sum()).float().clamp_min(1e-12)
    proxy.zero_grad()
    return [g / norm for g in grads]


class AntidistillHook:
    """The teacher's logits plus lambda times the proxy's finite difference.

    Called as `hook(input_ids, logits)`: a `generate` hook of the testbed and, with the same
    signature, a transformers `LogitsProcessor` (the gateway's local model uses it so). The
    proxy must share the teacher's vocabulary.
    """

    def __init__(self, proxy: Any, gradient: Sequence[torch.Tensor], cfg: ADSConfig) -> None:
        self.cfg = cfg
        self.plus, self.minus = _moved(proxy, gradient, cfg.eps), _moved(proxy, gradient, -cfg.eps)

    def delta(self, ids: torch.Tensor) -> torch.Tensor:
        """Delta(x) for every next token x after each row of `ids`."""
        with torch.inference_mode():
            plus = torch.log_softmax(self.plus(input_ids=ids).logits[:, -1, :].float(), -1)
            minus = torch.log_softmax(self.minus(input_ids=ids).logits[:, -1, :].float(), -1)
        return (plus - minus) / (2 * self.cfg.eps)

    def __call__(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        tilted = logits if self.cfg.lam == 0 else logits + self.cfg.lam * self.delta(ids).to(logits.dtype)
        if self.cfg.top_p < 1:
            tilted = tilted.masked_fill(~nucleus(tilted, self.cfg.top_p), float("-inf"))
        return tilted


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask of each row's nucleus: the most likely tokens, in order, until their probability
    reaches `top_p` (the most likely token always)."""
    probs = torch.softmax(logits.float(), -1)
    order = probs.argsort(dim=-1, descending=True)
    sorted_probs = probs.gather(-1, order)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
    keep_sorted = before < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def _moved(proxy: Any, gradient: Sequence[torch.Tensor], step: float) -> Any:
    """A copy of `proxy` with `step * gradient` added to its weights."""
    out = copy.deepcopy(proxy)
    with torch.no_grad():
        for p, g in zip(out.parameters(), gradient, strict=True):
            p.add_(step * g)
    return out.eval()


def antidistill_processor(model: Any, reference: Sequence[Sequence[int]], cfg: ADSConfig) -> AntidistillHook:
    """Antidistillation sampling for `model` with a copy of itself as the proxy student, its
    gradient taken on `reference` (token rows of the task to protect)."""
    proxy = copy.deepcopy(model).float().eval()
    with torch.enable_grad():  # callers may be generating (no_grad)
        gradient = text_gradient(proxy, reference)
    return AntidistillHook(proxy, gradient, cfg)
