"""Reasoning defences as policy actions: a flagged account's answer gets the defence its action
names; an account in good standing gets the upstream's bytes, exactly, on every API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from distillguard._errors import ConfigError
from distillguard.enforce import (
    DegradeConfig,
    Policy,
    rewrite_reasoning,
    summarise_reasoning,
)
from distillguard.gateway import (
    Gateway,
    GatewayConfig,
    Router,
    create_app,
    issue_key,
)

from . import canned
from .support import ServerThread, free_port

DEFENCES = DegradeConfig(reasoning="rewrite", throttle_reasoning="summarise")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[canned.Served]:
    yield from canned.serve(tmp_path_factory.mktemp("def") / "gw.db", DEFENCES)


def _body(api: str, stream: bool, **extra: Any) -> dict[str, Any]:
    return canned.body(api, stream, **extra)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", list(canned.ROUTES))
def test_an_account_in_good_standing_gets_the_upstreams_bytes(served: canned.Served, api: str, stream: bool) -> None:
    body = _body(api, stream)
    want = b"".join(canned.ANSWERS[canned.ROUTES[api]](body))
    assert served.post(api, "good", body).content == want


def test_an_openai_stream_that_asks_for_usage_gets_the_upstreams_bytes(served: canned.Served) -> None:
    body = _body("chat.completions", True, stream_options={"include_usage": True})
    assert served.post("chat.completions", "good", body).content == b"".join(canned.chat(body))


def _reasoning_served(api: str, answer: dict[str, Any]) -> list[str]:
    if api == "chat.completions":
        msg = answer["choices"][0]["message"]
        return [msg[k] for k in ("reasoning_content", "reasoning") if k in msg]
    if api == "messages":
        return [b["thinking"] for b in answer["content"] if b["type"] == "thinking"]
    return [s["text"] for o in answer["output"] if o["type"] == "reasoning" for s in o["summary"]]


def _tool_args(api: str, answer: dict[str, Any]) -> Any:
    if api == "chat.completions":
        return json.loads(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    if api == "messages":
        return next(b["input"] for b in answer["content"] if b["type"] == "tool_use")
    return json.loads(next(o["arguments"] for o in answer["output"] if o["type"] == "function_call"))


def _text_served(api: str, answer: dict[str, Any]) -> str:
    if api == "chat.completions":
        return str(answer["choices"][0]["message"]["content"])
    if api == "messages":
        return "".join(b["text"] for b in answer["content"] if b["type"] == "text")
    return "".join(c["text"] for o in answer["output"] if o["type"] == "message" for c in o["content"])


@pytest.mark.parametrize("api", list(canned.ROUTES))
def test_each_flagged_action_gets_the_defence_it_names(served: canned.Served, api: str) -> None:
    for account, want in (("degraded", rewrite_reasoning(canned.REASONING)), ("throttled", summarise_reasoning(canned.REASONING))):
        answer = served.post(api, account, _body(api, False)).json()
        assert _reasoning_served(api, answer) == [want], (account, answer)
        assert _text_served(api, answer) == canned.TEXT
        assert _tool_args(api, answer) == json.loads(canned.ARGS)  # the tool call passes untouched


@pytest.mark.parametrize("api", list(canned.ROUTES))
def test_a_flagged_stream_loses_the_trace(served: canned.Served, api: str) -> None:
    for account in ("degraded", "throttled"):
        text = served.post(api, account, _body(api, True)).text
        assert canned.REASONING[:40] not in text and "thinking_delta" not in text and "reasoning_summary" not in text
        assert canned.TEXT[:20] in text and canned.TEXT[20:] in text


def test_a_translated_stream_serves_the_rewritten_trace_before_the_answer(served: canned.Served) -> None:
    body = {"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": "Wait. Think it over. Then answer me."}]}
    plain = served.post("chat.completions", "good", body).text
    got = served.post("chat.completions", "degraded", body).text
    chunks = [json.loads(line[6:]) for line in got.splitlines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    reasoning = [d["reasoning_content"] for d in deltas if d.get("reasoning_content")]
    original = "".join(json.loads(line[6:])["choices"][0]["delta"].get("reasoning_content") or ""
                       for line in plain.splitlines() if line.startswith("data: {") and json.loads(line[6:]).get("choices"))
    assert original and reasoning == [rewrite_reasoning(original)]
    first_text = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert next(i for i, d in enumerate(deltas) if d.get("reasoning_content")) <= first_text


def test_rewrite_keeps_every_statement_drops_self_talk_and_states_the_conclusion_first() -> None:
    trace = "Hmm. The sum is 12 plus 30. Wait, 12 plus 30 is 42. So the answer is 42.\nOkay, let me check. 42 minus 30 is 12."
    assert rewrite_reasoning(trace) == "The answer is 42. The sum is 12 plus 30. 12 plus 30 is 42.\n42 minus 30 is 12."
    assert rewrite_reasoning("One statement.") == "One statement."
    assert rewrite_reasoning("Hmm. Wait.") == ""


def test_the_policy_config_names_a_defence_per_action() -> None:
    p = Policy(DegradeConfig(reasoning="antidistill", throttle_reasoning="rewrite", antidistill_fallback="summarise"))
    for acc, action in (("a", "degrade"), ("b", "throttle"), ("c", "monitor"), ("d", "allow")):
        p.apply_verdicts([{"account_id": acc, "action": action}])
    assert [p.decide(a).defence for a in "abcd"] == ["antidistill", "rewrite", None, None]
    assert [p.decide(a).degraded for a in "abcd"] == [True, True, False, False]
    assert p.degrade.text_defence("antidistill") == "summarise"
    assert Policy(DegradeConfig(throttle_degrades=False)).degrade.defence_for("throttle") is None
    with pytest.raises(ConfigError) as err:
        DegradeConfig(reasoning="shuffle", throttle_reasoning="x", antidistill_fallback="antidistill", antidistill_lam=-1)  # type: ignore[arg-type]
    msg = str(err.value)
    assert all(f in msg for f in ("reasoning must be", "throttle_reasoning must be", "antidistill_fallback must be", "antidistill_lam"))


def test_the_local_model_samples_antidistilled_for_flagged_accounts_only(tmp_path: Path) -> None:
    from distillguard.gateway._local import LocalUpstream
    from distillguard.localmodel import LocalModelConfig, build_model, train_tokenizer

    texts = ["the quick brown fox jumps over the lazy dog"] * 50 + ["hello world, how are you"] * 50
    tok = train_tokenizer(texts, 300)
    model = build_model(LocalModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=128), len(tok)).eval()  # no dropout
    router = Router()
    router.add("local", LocalUpstream(model, tok, max_new_tokens=12, reference=texts[::10]))
    cfg = GatewayConfig(db=f"sqlite:///{tmp_path / 'local.db'}", detect=False, capture_interval=0.02,
                        degrade=DegradeConfig(reasoning="antidistill", antidistill_lam=50.0))
    gw = Gateway(cfg, router=router)
    keys = {acc: issue_key(gw.store, acc).key for acc in ("good", "other", "flagged")}
    gw.store.add_override("flagged", "degrade", "test", "")
    gw.refresh()
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        url = f"http://127.0.0.1:{srv.server.config.port}/v1/chat/completions"

        def ask(acc: str) -> str:
            r = httpx.post(url, headers={"authorization": f"Bearer {keys[acc]}"}, timeout=60,
                           json={"model": "local", "max_tokens": 12, "messages": [{"role": "user", "content": "the quick"}]})
            assert r.status_code == 200, r.text
            return str(r.json()["choices"][0]["message"]["content"])

        good, flagged = ask("good"), ask("flagged")
        assert ask("other") == good and ask("good") == good  # greedy, untouched: the same answer
        assert flagged != good
    finally:
        srv.stop()
