"""The task's answers are checkable and every reasoning defence keeps the answer a person needs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from distillguard.antidistill import (
    TEXT_DEFENCES,
    ADSConfig,
    AntidistillHook,
    final_answer,
    is_correct,
    problems,
    rewritten_steps,
    trace,
)
from distillguard.antidistill._task import parse_trace, steps_of


def test_trace_works_every_column_and_states_the_sum() -> None:
    rng = np.random.default_rng(0)
    for p in problems(300, 4, rng):
        text = trace(p)
        assert is_correct(p, text) and int(final_answer(text) or -1) == p.a + p.b
        steps = parse_trace(text)
        assert [(s.x, s.y, s.carry, s.total) for s in steps_of(p)] == steps
        # each column's carry is the previous column's tens digit
        assert all(steps[i + 1][2] == steps[i][3] // 10 for i in range(len(steps) - 1))
    assert final_answer("no answer here") is None


def test_the_gateways_rewrite_keeps_every_step_and_states_the_last_first() -> None:
    from distillguard.antidistill._defences import sentence_rewrite
    from distillguard.enforce import rewrite_reasoning

    part = sentence_rewrite(rewrite_reasoning)
    rng = np.random.default_rng(5)
    for p in problems(50, 4, rng):
        text = trace(p)
        served = part(text, rng)
        steps = parse_trace(text)
        assert parse_trace(served) == [steps[-1], *steps[:-1]]
        assert is_correct(p, served) and served != text


@pytest.mark.parametrize("name", sorted(TEXT_DEFENCES))
def test_every_text_defence_keeps_the_result(name: str) -> None:
    rng = np.random.default_rng(1)
    for p in problems(200, 4, rng):
        served = TEXT_DEFENCES[name](trace(p), rng)
        assert is_correct(p, served), (name, served)


def test_withhold_and_summarise_drop_the_worked_steps() -> None:
    rng = np.random.default_rng(2)
    p = problems(1, 4, rng)[0]
    assert parse_trace(TEXT_DEFENCES["withhold"](trace(p), rng)) == []
    summary = TEXT_DEFENCES["summarise"](trace(p), rng)
    assert parse_trace(summary) == [] and summary.startswith("carries ")
    carries = "".join(str(s.total // 10) for s in steps_of(p))
    assert summary.split(";")[0] == f"carries {carries}"


def test_rewrite_keeps_every_step_and_changes_its_form() -> None:
    rng = np.random.default_rng(3)
    for p in problems(200, 4, rng):
        text = TEXT_DEFENCES["rewrite"](trace(p), rng)
        want = {s.position: (s.x, s.y, s.carry, s.total) for s in steps_of(p)}
        assert rewritten_steps(text) == want, text
    one = trace(problems(1, 4, rng)[0])
    rewrites = {TEXT_DEFENCES["rewrite"](one, rng) for _ in range(40)}
    assert len(rewrites) > 10 and one not in rewrites


def test_antidistill_hook_adds_the_scaled_central_difference() -> None:
    from distillguard.antidistill import _charlm as lm
    from distillguard.antidistill._adsampling import loss_gradient

    cfg = lm.LMConfig(n_layer=1, n_embd=32, n_head=2, steps=5)
    proxy = lm.build(cfg, 0)
    rng = np.random.default_rng(4)
    pairs = [(p.prompt, trace(p)) for p in problems(32, 2, rng)]
    grad = loss_gradient(proxy, pairs)
    assert abs(float(torch.sqrt(sum((g**2).sum() for g in grad))) - 1.0) < 1e-4
    ids = torch.tensor([lm.encode(pairs[0][0])])
    logits = torch.randn(1, len(lm.ALPHABET))
    assert torch.equal(AntidistillHook(proxy, grad, ADSConfig(lam=0.0, top_p=1.0))(ids, logits), logits)
    hook = AntidistillHook(proxy, grad, ADSConfig(lam=2.0, eps=1e-2, top_p=1.0))
    with torch.no_grad():
        base = torch.log_softmax(proxy(input_ids=ids).logits[:, -1], -1)
        plus = torch.log_softmax(hook.plus(input_ids=ids).logits[:, -1], -1)
        minus = torch.log_softmax(hook.minus(input_ids=ids).logits[:, -1], -1)
    got = hook(ids, logits)
    assert torch.allclose(got, logits + 2.0 * (plus - minus) / 2e-2, atol=1e-4)
    assert not torch.equal(got, logits)
    # the tilt is the directional derivative of log p along the gradient: one-sided agrees
    one_sided = (plus - base) / 1e-2
    assert torch.allclose(hook.delta(ids), one_sided, atol=0.05 * float(one_sided.abs().max()) + 1e-3)
    # the proxy itself is untouched (the hook moves copies)
    assert torch.equal(torch.log_softmax(proxy(input_ids=ids).logits[:, -1], -1), base)
    # the nucleus is the tilted distribution's: no tilt keeps the teacher's two plausible
    # tokens; a tilt far stronger than the teacher's logits keeps the one the proxy's loss
    # gains most from, whatever the teacher thinks of it
    peaked = torch.full((1, len(lm.ALPHABET)), -10.0)
    peaked[0, 3], peaked[0, 5] = 5.0, 4.0  # two plausible tokens hold nearly all the mass
    plain = AntidistillHook(proxy, grad, ADSConfig(lam=0.0, top_p=0.95))(ids, peaked)
    assert torch.isfinite(plain).nonzero()[:, 1].tolist() == [3, 5]
    strong = AntidistillHook(proxy, grad, ADSConfig(lam=1e6, eps=1e-2, top_p=0.95))(ids, peaked)
    assert torch.isfinite(strong).sum() == 1 and int(strong.argmax()) == int(hook.delta(ids).argmax())
    assert torch.isfinite(AntidistillHook(proxy, grad, ADSConfig(lam=1e6, top_p=1.0))(ids, peaked)).all()


def test_nucleus_keeps_the_most_likely_tokens_up_to_top_p() -> None:
    from distillguard.antidistill._adsampling import nucleus

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]]))
    assert nucleus(logits, 0.9).tolist() == [[True, True, True, False], [True, False, False, False]]
    assert nucleus(logits, 0.5).tolist() == [[True, False, False, False], [True, False, False, False]]
    assert nucleus(logits, 1.0).all()


def test_the_answer_after_its_mark_is_the_models_own_greedy_choice() -> None:
    """With `answer_start`, a hook shapes the reasoning only: once a row writes the mark's first
    character, the rest is what the model writes greedily with no hook."""
    from distillguard.antidistill import _charlm as lm

    model = lm.build(lm.LMConfig(n_layer=1, n_embd=32, n_head=2), 0)
    prompt = "Q:12+34="
    mark, nine = lm.encode("A")[0], lm.encode("9")[0]

    def force(ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, -1e9)
        out[:, mark if ids.shape[1] == len(prompt) else nine] = 0.0  # "A" first, then 9s
        return out

    hooked = lm.generate(model, [prompt], 12, hook=force)[0]
    assert hooked.startswith("A9")
    guarded = lm.generate(model, [prompt], 12, hook=force, answer_start="A")[0]
    own = lm.generate(model, [prompt + "A"], 11)[0]
    assert guarded == "A" + own


def test_the_tilt_favours_tokens_that_raise_the_proxys_loss_when_learnt() -> None:
    """The sign: one training step on the token of largest Delta raises the proxy's loss on the
    task, one on the token of smallest Delta lowers it, by about eta * Delta * |grad|."""
    from distillguard.antidistill import _charlm as lm
    from distillguard.antidistill._adsampling import loss_gradient

    proxy = lm.build(lm.LMConfig(n_layer=1, n_embd=32, n_head=2), 0)
    for m in proxy.modules():  # the exact gradient, no dropout noise
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    rng = np.random.default_rng(4)
    pairs = [(p.prompt, trace(p)) for p in problems(64, 2, rng)]
    ids_all, labels = lm._batch(pairs, np.arange(len(pairs)))

    def loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(model(input_ids=ids_all, labels=labels).loss)

    grad = loss_gradient(proxy, pairs)
    hook = AntidistillHook(proxy, grad, ADSConfig(lam=1.0, eps=1e-3, top_p=1.0))
    prefix = torch.tensor([lm.encode(pairs[0][0])])
    delta = hook.delta(prefix)[0]
    base, eta = loss(proxy), 1e-3
    changes = {}
    for tok in (int(delta.argmax()), int(delta.argmin())):
        student = copy.deepcopy(proxy)
        nll = -torch.log_softmax(student(input_ids=prefix).logits[0, -1], -1)[tok]
        nll.backward()
        with torch.no_grad():
            for p in student.parameters():
                p -= eta * p.grad
        changes[tok] = loss(student) - base
    hi, lo = int(delta.argmax()), int(delta.argmin())
    assert changes[hi] > 0 > changes[lo]
