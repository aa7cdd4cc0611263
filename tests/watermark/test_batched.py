"""The persistent-batch watermark (vLLM V1) marks each row exactly as the transformers processor
marks that row's sequence, follows the engine's batch updates, and its text is detected and
attributed per account."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from distillguard.watermark import WatermarkConfig, WatermarkLogitsProcessor, detect_ids
from distillguard.watermark._batched import BatchedWatermark

from .keys import fixed_key

VOCAB = 512
CONFIGS = [
    WatermarkConfig(),
    WatermarkConfig(scheme="gumbel"),
    WatermarkConfig(context_width=3, self_hash=True),
    WatermarkConfig(scheme="gumbel", context_width=2),
]
IDS = ["kgw", "gumbel", "kgw-selfhash-h3", "gumbel-h2"]


def _sequences(rng: np.random.Generator, n: int) -> list[tuple[list[int], list[int]]]:
    """(prompt, output) pairs; small token range so windows repeat (Gumbel's skip_repeated)."""
    out = []
    for _ in range(n):
        prompt = rng.integers(0, 6, int(rng.integers(0, 5))).tolist()
        output = rng.integers(0, 6, int(rng.integers(0, 6))).tolist()
        out.append((prompt, output))
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_row_equals_the_single_sequence_processor(config: WatermarkConfig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    version = fixed_key(7, config).current
    batch = BatchedWatermark(version)
    accounts = ["acct-a", "acct-b", None, "acct-a", None, "acct-c", "skip"]
    seqs = _sequences(rng, len(accounts))
    for i, ((prompt, output), account) in enumerate(zip(seqs, accounts, strict=True)):
        batch.add(i, prompt, output, account_id=account if account != "skip" else None,
                  marked=account != "skip")
    logits = torch.from_numpy(rng.normal(size=(len(accounts), VOCAB)).astype(np.float32))
    before = logits.clone()
    after = batch.apply(logits.clone())
    h = config.context_width
    for i, ((prompt, output), account) in enumerate(zip(seqs, accounts, strict=True)):
        seq = [*prompt, *output]
        if account == "skip" or len(seq) < h:
            assert torch.equal(after[i], before[i]), f"row {i} (seed {seed}) changed"
            continue
        proc = WatermarkLogitsProcessor(version, account)
        want = proc(torch.tensor([seq]), before[i : i + 1].clone())[0]
        assert torch.equal(after[i], want), f"row {i} account {account} seq {seq} (seed {seed})"


def test_batch_updates_move_rows_and_follow_live_outputs() -> None:
    version = fixed_key(7).current
    batch = BatchedWatermark(version)
    out_a: list[int] = [1]
    out_b: list[int] = [2]
    batch.add(0, [5], out_a, account_id="acct-a")
    batch.add(1, [5], out_b, account_id="acct-b")
    batch.add(2, [5], [3], marked=False)
    batch.move(0, 1, swap=True)
    assert batch.marked_rows == [0, 1]
    batch.move(1, 2, swap=False)  # acct-a's request replaces the unmarked one
    assert batch.marked_rows == [0, 2]
    batch.remove(0)
    assert batch.marked_rows == [2]
    out_a.append(4)  # the engine appends to the live list; the next step sees it
    logits = torch.zeros(3, VOCAB)
    got = batch.apply(logits.clone())
    want = WatermarkLogitsProcessor(version, "acct-a")(torch.tensor([[5, 1, 4]]), torch.zeros(1, VOCAB))[0]
    assert torch.equal(got[2], want) and torch.equal(got[:2], torch.zeros(2, VOCAB))
    with pytest.raises(Exception, match="outside the logits batch"):
        batch.apply(torch.zeros(2, VOCAB))


def _engine_generate(model: Any, tok: Any, proc: Any, requests: list[tuple[str, str]], steps: int,
                     rows: int, seed: int) -> dict[str, list[list[int]]]:
    """A tiny persistent-batch engine: `rows` slots, requests join as slots free up, one
    forward pass per step over every active row, the processor told of every change."""
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from distillguard.watermark.vllm_logits import ACCOUNT_ARG

    gen = torch.Generator().manual_seed(seed)
    queue = list(requests)
    slots: list[dict[str, Any] | None] = [None] * rows
    done: dict[str, list[list[int]]] = {}
    removed: list[int] = []
    moved: list[tuple[int, int, Any]] = []
    while queue or any(slots):
        added = []
        for i in range(rows):
            if slots[i] is None and queue:
                prompt, account = queue.pop(0)
                ids = tok(prompt, add_special_tokens=False)["input_ids"][-64:] or [0]
                slots[i] = {"prompt": ids, "out": [], "account": account}
                params = SimpleNamespace(extra_args={ACCOUNT_ARG: account})
                added.append((i, params, ids, slots[i]["out"]))
        if rows > 1 and slots[0] is not None and slots[1] is not None and len(slots[0]["out"]) == 5:
            slots[0], slots[1] = slots[1], slots[0]  # the engine condenses/reorders its batch
            moved.append((0, 1, MoveDirectionality.SWAP))
        proc.update_state(BatchUpdate(rows, removed, added, moved))
        removed, moved = [], []
        active = [i for i in range(rows) if slots[i] is not None]
        logits = torch.full((rows, len(tok)), -1e9)
        with torch.inference_mode():
            for i in active:
                s = slots[i]
                x = torch.tensor([[*s["prompt"], *s["out"]]])
                logits[i] = model(x).logits[0, -1, : len(tok)]
        logits = proc.apply(logits)
        for i in active:
            s = slots[i]
            nxt = int(torch.multinomial(torch.softmax(logits[i].double(), -1), 1, generator=gen))
            s["out"].append(nxt)
            if len(s["out"]) >= steps:
                done.setdefault(s["account"], []).append(list(s["out"]))
                slots[i] = None
                removed.append(i)
    return done


def test_vllm_adapter_marks_and_attributes_each_account(
    teacher: tuple[Any, Any], prompts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fake_vllm"))
    sys.modules.pop("distillguard.watermark.vllm_logits", None)
    from distillguard.watermark import vllm_logits

    model, tok = teacher
    key = fixed_key(2)
    monkeypatch.setenv(vllm_logits.KEY_FILE_ENV, str(key.save(tmp_path / "wm.key")))
    proc = vllm_logits.DistillguardWatermark(None, torch.device("cpu"), False)
    assert proc.is_argmax_invariant() is False
    with pytest.raises(ValueError, match="distillguard_account"):
        vllm_logits.DistillguardWatermark.validate_params(
            SimpleNamespace(extra_args={vllm_logits.ACCOUNT_ARG: "x" * 500}))
    accounts = ["acct-000101", "acct-000202"]
    requests = [(p, accounts[i % 2]) for i, p in enumerate(prompts[:24])]
    done = _engine_generate(model, tok, proc, requests, steps=100, rows=4, seed=0)
    candidates = [f"acct-{i:06d}" for i in range(10_000)]
    for account in accounts:
        det = detect_ids(key, done[account], candidates=candidates)
        assert det.p_value < 1e-10, (account, det.p_value)
        assert [a.account_id for a in det.accounts if a.attributed] == [account]
    monkeypatch.delenv(vllm_logits.KEY_FILE_ENV)
    with pytest.raises(Exception, match="DISTILLGUARD_WATERMARK_KEY_FILE"):
        vllm_logits.DistillguardWatermark(None, torch.device("cpu"), False)
