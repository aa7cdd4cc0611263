"""Tool calls are captured: the traffic log's response text carries every call an answer makes
(OpenAI `tool_calls`, Anthropic `tool_use`, Responses `function_call`), JSON and streamed, for
accounts in good standing and flagged ones, while the arguments reach the client untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from distillguard.enforce import DegradeConfig
from distillguard.gateway._toolcalls import StreamedCalls, tool_call_line, with_tool_calls

from . import canned

CALL = '<tool_call name="get_weather">{"city":"Paris","unit":"celsius"}</tool_call>'


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[canned.Served]:
    yield from canned.serve(tmp_path_factory.mktemp("tools") / "gw.db", DegradeConfig(reasoning="summarise"))


@pytest.mark.parametrize("account", ["good", "degraded"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", list(canned.ROUTES))
def test_the_response_text_carries_the_tool_call(served: canned.Served, api: str, stream: bool, account: str) -> None:
    prompt = f"weather {api} {stream} {account}"
    served.post(api, account, canned.body(api, stream, prompt=prompt))
    got = [e for e in served.events() if e["prompt"] == prompt]
    assert len(got) == 1
    assert got[0]["response"] == f"{canned.TEXT}\n{CALL}"


def test_the_line_format() -> None:
    assert tool_call_line("get_weather", '{"city": "Paris"}') == '<tool_call name="get_weather">{"city":"Paris"}</tool_call>'
    assert tool_call_line("run", {"cmd": "ls"}) == '<tool_call name="run">{"cmd":"ls"}</tool_call>'
    # a name cannot close the tag; arguments cut short are kept as sent
    assert tool_call_line('a">b', '{"x": 1') == '<tool_call name="a\\">b">{"x": 1</tool_call>'
    assert with_tool_calls("", [("f", "{}")]) == '<tool_call name="f">{}</tool_call>'
    assert with_tool_calls("hi", []) == "hi"


def test_streamed_pieces_assemble_per_call_in_order() -> None:
    calls = StreamedCalls()
    calls.start(0, "a")
    calls.start(1, "b")
    calls.add(0, '{"x"')
    calls.add(1, "{}")
    calls.add(0, ": 1}")
    assert calls.calls() == [("a", '{"x": 1}'), ("b", "{}")]
    calls.complete(1, "b", {"y": 2})
    assert calls.calls()[1] == ("b", '{"y":2}')
    assert json.loads(calls.calls()[0][1]) == {"x": 1}
