"""The end-to-end proof: teacher, harvest by several accounts, students, trace.

Used by the end-to-end test (small) and `benchmarks/bench_watermark.py` (larger).
The teacher is the project's own local model; answers are harvested through the
gateway (`harvest_via_gateway`, its local backend marking each account's answers)
or, for bulk, through the same logits processor in batched generation
(`harvest_direct`); students are trained from scratch on the harvested answers
with the same training loop as the teacher.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard.localmodel import (
    LocalModelConfig,
    build_model,
    encode_documents,
    generate,
    train_lm,
)


@dataclass(frozen=True)
class Harvested:
    """One answer pulled by one account."""

    account_id: str
    prompt: str
    text: str


def chat_prompt(prompt: str) -> str:
    """The prompt as the gateway's local backend renders a one-turn chat."""
    return f"user: {prompt}\nassistant:"


def harvest_direct(
    model: Any,
    tokenizer: Any,
    key: Any | None,
    prompts_by_account: dict[str, Sequence[str]],
    *,
    max_new_tokens: int = 128,
    seed: int = 0,
) -> list[Harvested]:
    """Answers generated in batches, marked per account with `key.logits_processor`."""
    rows: list[Harvested] = []
    for i, (account, prompts) in enumerate(prompts_by_account.items()):
        procs = [key.logits_processor(account)] if key is not None else None
        texts = generate(
            model,
            tokenizer,
            [chat_prompt(p) for p in prompts],
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens // 2,
            logits_processors=procs,
            seed=seed + i,
        )
        rows.extend(Harvested(account, p, t) for p, t in zip(prompts, texts, strict=True))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def harvest_via_gateway(
    key_file: Path,
    prompts_by_account: dict[str, Sequence[str]],
    workdir: Path,
    *,
    max_tokens: int = 128,
) -> list[Harvested]:
    """Answers pulled through a real gateway (uvicorn on localhost) with one API key per account.

    The gateway is configured with `watermark_key_file`, so its local backend marks
    each answer for the account that owns the key.
    """
    import httpx
    import uvicorn

    from distillguard.gateway import Gateway, GatewayConfig, create_app, issue_key

    cfg = GatewayConfig(
        db=f"sqlite:///{workdir / 'gateway.db'}",
        upstreams=("local",),
        watermark_key_file=key_file,
        detect=False,
    )
    gw = Gateway(cfg)
    keys = {account: issue_key(gw.store, account).key for account in prompts_by_account}
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(gateway=gw), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start within 60 s")
        time.sleep(0.05)
    rows: list[Harvested] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            for account, prompts in prompts_by_account.items():
                for prompt in prompts:
                    resp = http.post(
                        "/v1/chat/completions",
                        headers={"Authorization": f"Bearer {keys[account]}"},
                        json={
                            "model": "local",
                            "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": max_tokens,
                            "temperature": 1.0,
                        },
                    )
                    resp.raise_for_status()
                    text = resp.json()["choices"][0]["message"]["content"] or ""
                    rows.append(Harvested(account, prompt, str(text)))
    finally:
        server.should_exit = True
        thread.join(30)
    return rows


def train_student(
    tokenizer: Any,
    rows: Sequence[Harvested],
    *,
    config: LocalModelConfig | None = None,
    steps: int = 200,
    seq_len: int = 64,
    seed: int = 1,
    progress: bool = False,
) -> Any:
    """A fresh model of the teacher's shape trained only on harvested (prompt, answer) pairs."""
    config = config or LocalModelConfig(seed=seed)
    model = build_model(config, len(tokenizer))
    docs = [chat_prompt(r.prompt) + r.text for r in rows]
    train_lm(
        model,
        encode_documents(tokenizer, docs),
        steps=steps,
        seq_len=seq_len,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=seed,
        description="training a student",
        progress=progress,
    )
    return model


def perplexity(model: Any, tokenizer: Any, prompts: Sequence[str], texts: Sequence[str]) -> float:
    """Perplexity of `texts` (answers) given their prompts, under `model`."""
    import math

    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for p, t in zip(prompts, texts, strict=True):
            pre = tokenizer(chat_prompt(p), add_special_tokens=False)["input_ids"]
            ans = tokenizer(t, add_special_tokens=False)["input_ids"]
            if not ans:
                continue
            ids = (pre + ans)[-int(model.config.n_positions) :]
            n_ans = min(len(ans), len(ids) - 1)
            x = torch.tensor([ids])
            logp = torch.log_softmax(model(input_ids=x).logits[0, :-1], dim=-1)
            tgt = x[0, 1:]
            lp = logp[torch.arange(tgt.numel()), tgt][-n_ans:]
            total -= float(lp.sum())
            count += n_ans
    return math.exp(total / max(count, 1))
