"""The end user a client declares (OpenAI `user`/`safety_identifier`, Anthropic `metadata.user_id`) is captured and exported."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
import pytest
import sqlalchemy as sa

from distillguard.gateway import FakeUpstream, Router, Store, export_log
from distillguard.gateway._local import LOCAL_MODEL_ID
from distillguard.gateway._protocol import END_USER_MAX_CHARS
from distillguard.traffic import read_table

from .support import Running


def _openai(r: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=r.url + "/v1", api_key=r.key, max_retries=0, timeout=10)


def _anthropic(r: Running) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=r.url, api_key=r.key, max_retries=0, timeout=10)


def test_both_sdks_declare_end_users_that_are_captured_and_exported(
    running: Running, tmp_path: Path
) -> None:
    o = _openai(running)
    o.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "eu-user"}],
                              user="customer-17")
    o.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "eu-safety"}],
                              extra_body={"safety_identifier": "hashed-4f2a"})
    o.completions.create(model="gpt-test", prompt="eu-completion", user="customer-18")
    o.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "eu-none"}])
    o.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "eu-long"}],
                              user="x" * 5000)
    _anthropic(running).messages.create(
        model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "eu-claude"}],
        metadata={"user_id": "13803d75-b4b5"},
    )
    ev = {e["prompt"]: e["end_user"] for e in running.events() if e["prompt"].startswith("eu-")}
    assert ev == {
        "eu-user": "customer-17", "eu-safety": "hashed-4f2a", "eu-completion": "customer-18",
        "eu-none": None, "eu-long": "x" * END_USER_MAX_CHARS, "eu-claude": "13803d75-b4b5",
    }
    export_log(running.gateway.store, tmp_path / "log")
    events = read_table(tmp_path / "log", "events").to_pylist()
    exported = {e["prompt"]: e["end_user"] for e in events if e["prompt"].startswith("eu-")}
    assert exported == ev


def test_a_non_string_end_user_is_refused_in_the_apis_shape(running: Running) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _openai(running).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}], extra_body={"user": 5}
        )
    assert "'user' must be a string" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as aerr:
        _anthropic(running).messages.create(
            model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "x"}],
            metadata={"user_id": ["a"]},  # type: ignore[typeddict-item]
        )
    assert "metadata.user_id" in aerr.value.message


def test_a_store_made_before_end_user_gains_the_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as con:  # what a database written by the previous version looks like
        con.exec_driver_sql("ALTER TABLE dg_events DROP COLUMN end_user")
    engine.dispose()
    store = Store(url)
    store.insert_events([{"event_id": "e1", "ts_us": 1, "account_id": "a", "model": "m",
                          "prompt": "p", "end_user": "u1"}])
    assert [e["end_user"] for rows in store.iter_events() for e in rows] == ["u1"]
    store.close()


def test_models_lists_ids_a_client_can_send_not_patterns() -> None:
    router = Router()
    router.add("gpt-4o", FakeUpstream(name="fake"))
    router.add("claude-*", FakeUpstream(name="claude-fake"))
    router.add("*", FakeUpstream(name=LOCAL_MODEL_ID))
    assert router.models() == ["gpt-4o", "claude-fake", LOCAL_MODEL_ID]
    for model in router.models():
        assert router.resolve(model) is not None
