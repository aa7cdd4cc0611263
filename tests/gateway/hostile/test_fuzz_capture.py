"""A fuzzer of request fields aimed at capture and policy (schemathesis covers the shapes; this
checks what is served and kept): every answered exchange is watermarked and captured whole, a
blocked account gets nothing, a degraded one no reasoning and no token logprobs.

Cases are drawn from a seeded generator; a failure names its seed and case so it replays.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from distillguard.gateway import (
    AnthropicUpstream,
    Gateway,
    GatewayConfig,
    OpenAIUpstream,
    Router,
    create_app,
    issue_key,
)
from distillguard.gateway._mock import ANSWER, REASONING
from distillguard.gateway._store import bound_text

from ..support import ServerThread, free_port

SEED = 20261207
CASES = 90
PATHS = {"chat.completions": "/v1/chat/completions", "completions": "/v1/completions", "messages": "/v1/messages"}
# prompts a hostile client sends: control characters, NUL, scripts, emoji, long runs
PIECES = ["plain words", "\x00", "nul\x00inside", "\u202eRTL override", "emoji \U0001f600 here", "tab\tand\nnewline",
          "ünïcödé", "x" * 3000, "<script>alert(1)</script>", "'; DROP TABLE dg_events; --", "\r\n\r\nHTTP/1.1 200 OK"]


def _noise(rng: random.Random) -> Any:
    return rng.choice([None, True, 0, -1, 2**40, 1.5, "", "x" * 50, [], [1, "a"], {"a": {"b": None}}])


def _knobs(rng: random.Random, api: str) -> dict[str, Any]:
    """A random set of the API's knobs, valid values and hostile ones."""
    openai: dict[str, Any] = {
        "n": rng.choice([1, 2, 5]), "best_of": rng.choice([1, 3]), "logprobs": rng.choice([True, 5, 1]),
        "top_logprobs": rng.choice([0, 5, 20]), "echo": True, "audio": {"voice": "alloy", "format": "wav"},
        "modalities": ["text", "audio"], "response_format": {"type": "json_object"}, "seed": 7, "logit_bias": {"50256": -100},
        "presence_penalty": rng.choice([0.5, 9]), "user": "someone", "stream_options": {"include_usage": rng.choice([True, False])},
        "max_completion_tokens": rng.choice([1, 64, 10**9]), "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    anthropic: dict[str, Any] = {
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5, "stop_sequences": ["\n\n"],
        "metadata": {"user_id": "u"}, "system": rng.choice(PIECES),
    }
    common: dict[str, Any] = {"temperature": rng.choice([0, 0.7, 1, 3, -1, "hot"]), "max_tokens": rng.choice([16, 4096, 0, "many"]),
                              "stop": rng.choice(["\n", ["a", "b"], 5]), "top_p": rng.choice([0.5, 1, 2])}
    pool = {**common, **(anthropic if api == "messages" else openai)}
    chosen = dict(rng.sample(sorted(pool.items()), rng.randint(0, 5)))
    if rng.random() < 0.3:
        chosen[f"x_{rng.randint(0, 999)}"] = _noise(rng)
    return chosen


@dataclass
class Case:
    n: int
    api: str
    model: str
    stream: bool
    prompt: str
    body: dict[str, Any]


def _cases(rng: random.Random, models: list[str], count: int) -> Iterator[Case]:
    for n in range(count):
        api = rng.choice(list(PATHS))
        model = rng.choice(models)
        prompt = f"case {n}: " + " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))
        body: dict[str, Any] = {"model": model, **_knobs(rng, api)}
        stream = rng.random() < 0.5
        body["stream"] = stream
        if api == "completions":
            body["prompt"] = prompt
        else:
            body["messages"] = [{"role": "user", "content": prompt}]
            if api == "messages" and not isinstance(body.get("max_tokens"), int):
                body["max_tokens"] = 256
        yield Case(n, api, model, stream, prompt, body)


def _served(api: str, r: httpx.Response) -> tuple[str, str]:
    """(answer text, everything else the client got that could carry answer text) of a 200."""
    if not r.headers["content-type"].startswith("text/event-stream"):
        data = r.json()
        if api == "messages":
            return "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text"), r.text
        choice = data["choices"]
        assert len(choice) == 1
        return (choice[0]["message"]["content"] or "") if api == "chat.completions" else choice[0]["text"], r.text
    text = []
    for line in r.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if api == "messages":
            d = ev.get("delta") or {}
            if ev.get("type") == "content_block_delta" and d.get("type") == "text_delta":
                text.append(d["text"])
        else:
            for c in ev.get("choices") or []:
                assert c.get("index", 0) == 0
                piece = (c.get("delta") or {}).get("content") if api == "chat.completions" else c.get("text")
                text.append(piece or "")
    return "".join(text), r.text


@dataclass
class Fuzzed:
    url: str
    gateway: Gateway
    marker: Any  # the watermark key
    keys: dict[str, str]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> Iterator[Fuzzed]:
    from distillguard.watermark import WatermarkKey

    tmp = tmp_path_factory.mktemp("fuzz")
    wm = WatermarkKey.generate()
    cfg = GatewayConfig(db=f"sqlite:///{tmp / 'f.db'}", watermark_key_file=wm.save(tmp / "wm.key"), detect=False,
                        capture_interval=0.02, keep_responses=True, login_failures_per_minute=10_000)
    router = Router()
    router.add("claude-*", AnthropicUpstream(mock_upstream.removesuffix("/v1"), timeout=5.0))
    router.add("*", OpenAIUpstream(mock_upstream, timeout=5.0))
    gw = Gateway(cfg, router=router)
    keys = {a: issue_key(gw.store, a).key for a in ("fuzz", "fuzz-blocked", "fuzz-degraded")}
    gw.store.add_override("fuzz-blocked", "block")
    gw.store.add_override("fuzz-degraded", "degrade")
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    yield Fuzzed(f"http://127.0.0.1:{srv.server.config.port}", gw, wm, keys)
    srv.stop()


def _send(f: Fuzzed, account: str, case: Case) -> httpx.Response:
    return httpx.post(f.url + PATHS[case.api], headers={"authorization": f"Bearer {f.keys[account]}"}, timeout=10,
                      content=json.dumps(case.body).encode())


def _events(gw: Gateway, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows = [e for b in gw.store.iter_events() for e in b]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_every_answer_is_watermarked_and_captured_whole(fuzzed: Fuzzed) -> None:
    rng = random.Random(SEED)
    marked = fuzzed.marker.text_watermarker("fuzz").apply
    answered: dict[str, str] = {}
    tool_calls: set[str] = set()
    sent = 0
    for case in _cases(rng, ["mock-echo", "claude-echo"], CASES):
        r = _send(fuzzed, "fuzz", case)
        sent += 1
        where = f"seed {SEED} case {case.n} ({case.api} {case.model} stream={case.stream} {sorted(case.body)})"
        assert r.status_code < 500, f"{where}: {r.status_code} {r.text[:300]}"
        if r.status_code != 200:
            assert case.prompt not in r.text, f"{where}: a refused request's answer carries the prompt"
            continue
        text, everything = _served(case.api, r)
        if '"tool_calls"' in everything or '"tool_use"' in everything:
            # a tool call's arguments are not answer text the gateway marks (docs/security.md)
            tool_calls.add(f"case {case.n}:")
            continue
        assert text == marked(case.prompt), f"{where}: served text is not the watermarked answer"
        assert '"logprobs":{' not in everything.replace(" ", "") and '"top_logprobs"' not in everything, f"{where}: logprobs served"
        answered[f"case {case.n}:"] = text
    assert len(answered) >= CASES // 4, "too few cases were answered to mean anything; widen the valid knobs"
    rows = _events(fuzzed.gateway, sent)
    assert len(rows) == sent, "every exchange, answered or refused, is captured once"
    for row in rows:
        nonce = (row["prompt"] or "").split(" ", 2)
        key = " ".join(nonce[:2])
        if row["status"] == 200 and key not in tool_calls:
            assert key in answered, row["prompt"][:80]
            assert row["response"] == bound_text(answered[key], None), f"capture of {key} is not what was served"


def test_a_blocked_account_gets_nothing_and_a_degraded_one_no_reasoning(fuzzed: Fuzzed) -> None:
    rng = random.Random(SEED + 1)
    for case in _cases(rng, ["mock-echo", "claude-echo", "mock-reason", "claude-reason"], CASES // 2):
        where = f"seed {SEED + 1} case {case.n} ({case.api} {case.model} stream={case.stream} {sorted(case.body)})"
        r = _send(fuzzed, "fuzz-blocked", case)
        assert r.status_code in (400, 403), f"{where}: blocked account answered {r.status_code}"
        assert ANSWER not in r.text and case.prompt not in r.text
        r = _send(fuzzed, "fuzz-degraded", case)
        assert r.status_code < 500, f"{where}: {r.status_code}"
        if r.status_code == 200:
            text, everything = _served(case.api, r)
            if '"tool_calls"' in everything or '"tool_use"' in everything:
                continue
            assert REASONING not in everything and "Mock reasoning" not in everything, f"{where}: reasoning served to a degraded account"
            assert '"logprobs":{' not in everything.replace(" ", ""), f"{where}: logprobs served to a degraded account"
            expected = case.prompt if case.model.endswith("-echo") else ANSWER
            assert text == fuzzed.marker.text_watermarker("fuzz-degraded").apply(expected), f"{where}: unwatermarked"
