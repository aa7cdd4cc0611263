"""The official openai and anthropic SDKs, unmodified, against a real uvicorn server."""

from __future__ import annotations

import anthropic
import openai
import pytest

from distillguard.gateway._mock import ANSWER

from .support import Running


def _openai(r: Running, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=r.url + "/v1", api_key=key or r.key, max_retries=0, timeout=10)


def _anthropic(r: Running, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=r.url, api_key=key or r.key, max_retries=0, timeout=10)


def test_openai_chat_completion_and_capture(running: Running) -> None:
    out = _openai(running).chat.completions.create(
        model="gpt-test", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6*7?"}],
        max_tokens=50, temperature=0.2,
    )
    assert out.choices[0].message.content == ANSWER
    assert out.usage is not None and out.usage.prompt_tokens == 9 and out.usage.completion_tokens == 12
    ev = [e for e in running.events() if e["prompt"] == "What is 6*7?"]
    assert len(ev) == 1
    e = ev[0]
    assert (e["account_id"], e["key_id"], e["endpoint"], e["model"], e["status"]) == ("acme", running.key_id, "chat.completions", "gpt-test", 200)
    assert (e["system"], e["turns"], e["max_tokens"], e["response"]) == ("Be brief.", 1, 50, ANSWER)
    assert e["temperature"] == pytest.approx(0.2) and e["latency_ms"] > 0
    assert running.key not in str(e)


def test_openai_stream_logs_tokens_when_it_ends(running: Running) -> None:
    stream = _openai(running).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "stream please"}], stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == ANSWER
    assert usage is not None and usage.completion_tokens == 12
    e = next(e for e in running.events() if e["prompt"] == "stream please")
    assert (e["status"], e["response"], e["prompt_tokens"], e["completion_tokens"]) == (200, ANSWER, 9, 12)


def test_openai_completions_and_models(running: Running) -> None:
    c = _openai(running)
    out = c.completions.create(model="gpt-test", prompt="Complete this", max_tokens=20)
    assert out.choices[0].text == ANSWER
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model="gpt-test", prompt="and stream", stream=True) if ch.choices)
    assert streamed == ANSWER
    # ids a client can send, never a route's pattern (gpt-*, *)
    assert not [m.id for m in c.models.list() if any(ch in m.id for ch in "*?[")]


def test_anthropic_messages_and_stream(running: Running) -> None:
    c = _anthropic(running)
    msg = c.messages.create(model="claude-test", max_tokens=64, system="terse", messages=[{"role": "user", "content": "Hi Claude"}])
    assert msg.content[0].type == "text" and msg.content[0].text == ANSWER
    assert msg.usage.input_tokens == 9 and msg.stop_reason == "end_turn"
    with c.messages.stream(model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "Stream, Claude"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == ANSWER and final.usage.output_tokens == 12
    # the Anthropic API served from an OpenAI-compatible upstream, and from the fake model
    other = c.messages.create(model="gpt-test", max_tokens=32, messages=[{"role": "user", "content": "cross"}])
    assert other.content[0].text == ANSWER  # type: ignore[union-attr]
    ev = {e["prompt"]: e for e in running.events()}
    assert ev["Hi Claude"]["endpoint"] == "messages" and ev["Hi Claude"]["system"] == "terse"
    assert ev["Stream, Claude"]["completion_tokens"] == 12


def test_sdk_errors_have_each_apis_shape(running: Running) -> None:
    with pytest.raises(openai.AuthenticationError) as oa:
        _openai(running, "dg-knotakey0000-xxxxxxxx").chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert "invalid or has been revoked" in oa.value.message
    with pytest.raises(anthropic.AuthenticationError) as an:
        _anthropic(running, "nope").messages.create(model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert an.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as nf:
        _openai(running).chat.completions.create(model="no-such-model-xyz", messages=[{"role": "user", "content": "x"}])
    assert "model" in nf.value.message
    with pytest.raises(anthropic.BadRequestError) as br:
        _anthropic(running).messages.create(model="claude-test", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert "max_tokens" in br.value.message
