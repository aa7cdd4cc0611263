"""A key holder tries the API's knobs for an answer that is not watermarked, not degraded or
not captured whole: more choices, token logprobs, streams of either."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from distillguard.gateway import (
    Gateway,
    GatewayConfig,
    OpenAIUpstream,
    Router,
    create_app,
    issue_key,
)
from distillguard.gateway._mock import ANSWER, REASONING

from ..support import ServerThread, free_port

PROMPT = "please explain in simple words how the big old house was built and why people liked the quick answer"


@dataclass
class Marked:
    url: str
    gateway: Gateway
    key: str
    marked: str  # the prompt as the watermark serves it to this account


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> Iterator[Marked]:
    from distillguard.watermark import WatermarkKey

    wm = next(k for k in (WatermarkKey.generate() for _ in range(50)) if k.text_watermarker("acc-1").apply(PROMPT) != PROMPT)
    tmp = tmp_path_factory.mktemp("knobs")
    cfg = GatewayConfig(db=f"sqlite:///{tmp / 'wm.db'}", watermark_key_file=wm.save(tmp / "wm.key"), detect=False,
                        capture_interval=0.02, keep_responses=True)
    router = Router()
    router.add("*", OpenAIUpstream(mock_upstream, timeout=5.0))
    gw = Gateway(cfg, router=router)
    key = issue_key(gw.store, "acc-1").key
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    yield Marked(f"http://127.0.0.1:{srv.server.config.port}", gw, key, wm.text_watermarker("acc-1").apply(PROMPT))
    srv.stop()


def _served(resp: httpx.Response, chat: bool) -> tuple[list[str], bool]:
    """(each choice's served text, whether any logprobs came) of a JSON or SSE answer."""
    if resp.headers["content-type"].startswith("application/json"):
        data = resp.json()
        texts = [c["message"]["content"] if chat else c["text"] for c in data["choices"]]
        return texts, any(c.get("logprobs") for c in data["choices"])
    by_index: dict[int, str] = {}
    logprobs = False
    for line in resp.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        for c in json.loads(line[6:]).get("choices", []):
            piece = (c.get("delta") or {}).get("content") if chat else c.get("text")
            by_index[c["index"]] = by_index.get(c["index"], "") + (piece or "")
            logprobs |= bool(c.get("logprobs"))
    return [by_index[i] for i in sorted(by_index)], logprobs


KNOBS: list[tuple[str, dict[str, Any]]] = [
    ("chat.completions", {"n": 3}),
    ("chat.completions", {"logprobs": True, "top_logprobs": 5}),
    ("chat.completions", {"logprobs": True, "stream": True}),
    ("chat.completions", {"n": 2, "logprobs": True, "stream": True}),
    ("completions", {"n": 3}),
    ("completions", {"best_of": 3, "logprobs": 5}),
    ("completions", {"logprobs": 5}),
    ("completions", {"logprobs": 1, "stream": True}),
    ("completions", {"n": 2, "logprobs": 1, "stream": True}),
]


@pytest.mark.parametrize(("api", "knobs"), KNOBS, ids=[f"{a}-{'-'.join(k)}" for a, k in KNOBS])
def test_every_served_choice_is_watermarked_and_captured(marked: Marked, api: str, knobs: dict[str, Any]) -> None:
    chat = api == "chat.completions"
    tag = f"{api} {sorted(knobs)}"
    body: dict[str, Any] = {"model": "mock-echo", **knobs}
    if chat:
        body["messages"] = [{"role": "user", "content": PROMPT}, ]
        body["user"] = tag
    else:
        body["prompt"] = PROMPT
    since_us = time.time_ns() // 1000
    r = httpx.post(f"{marked.url}/v1/{'chat/completions' if chat else 'completions'}", json=body,
                   headers={"authorization": f"Bearer {marked.key}"}, timeout=10)
    if knobs.get("n", 1) > 1 or knobs.get("best_of", 1) > 1:
        # one answer per request: more would need each watermarked, degraded and captured
        assert r.status_code == 400 and r.json()["error"]["param"] in ("n", "best_of"), r.text
        return
    assert r.status_code == 200, r.text
    texts, logprobs = _served(r, chat)
    assert texts and all(t == marked.marked for t in texts), f"unwatermarked text served for {tag}: {texts}"
    assert not logprobs, f"logprobs (the original tokens) served for {tag}"
    ev = _event_since(marked, since_us)
    assert sum(map(len, texts)) <= len(ev["response"] or ""), f"capture kept less than was served for {tag}"


def _event_since(m: Marked, since_us: int) -> dict[str, Any]:
    """The one answered exchange captured since `since_us` (waits for capture)."""
    deadline = time.monotonic() + 5
    while True:
        rows = [e for e in m.gateway.store.events_page(0, 10_000) if e["ts_us"] >= since_us and e["status"] == 200]
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1
            return rows[0]
        time.sleep(0.05)


def test_an_upstream_sending_more_choices_is_captured_whole_or_cut() -> None:
    """The request asked for one choice; an upstream that sends three anyway is captured whole,
    and when the answer is rewritten only the rewritten choice is served."""
    from distillguard.gateway._native import Rewrite, read_answer
    from distillguard.gateway._protocol import parse_openai_completion

    req = parse_openai_completion({"model": "m", "prompt": "p"})
    answer = {"choices": [{"index": i, "text": f"answer {i}", "logprobs": {"tokens": ["answer"]}} for i in range(3)]}
    _, reply = read_answer("completions", json.dumps(answer).encode(), req, Rewrite(), "up")
    assert reply.text.split("\n") == ["answer 0", "answer 1", "answer 2"]
    out, reply = read_answer("completions", json.dumps(answer).encode(), req, Rewrite(degrade=True), "up")
    served = json.loads(out)["choices"]
    assert [c["text"] for c in served] == ["answer 0"] == [reply.text] and "logprobs" not in served[0]


def test_degraded_account_gets_no_reasoning_nor_logprobs(tmp_path_factory: pytest.TempPathFactory, mock_upstream: str) -> None:
    """Degrade alone (no watermark) rewrites the answer: the knobs go too."""
    cfg = GatewayConfig(db=f"sqlite:///{tmp_path_factory.mktemp('deg') / 'd.db'}", detect=False, capture_interval=0.02)
    router = Router()
    router.add("*", OpenAIUpstream(mock_upstream, timeout=5.0))
    gw = Gateway(cfg, router=router)
    key = issue_key(gw.store, "knob-degraded").key
    gw.store.add_override("knob-degraded", "degrade")
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        for stream in (False, True):
            r = httpx.post(f"http://127.0.0.1:{srv.server.config.port}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=10,
                           json={"model": "mock-reason", "messages": [{"role": "user", "content": "think"}], "logprobs": True, "top_logprobs": 3, "stream": stream})
            assert r.status_code == 200, r.text
            texts, logprobs = _served(r, chat=True)
            assert REASONING not in r.text and not logprobs and texts == [ANSWER]
    finally:
        srv.stop()
