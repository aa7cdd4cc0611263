"""`equivalent-program` as a policy action: a flagged account's Python blocks come in an
equivalent form drawn per answer; an account in good standing gets the upstream's bytes."""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from distillguard._errors import ConfigError
from distillguard.enforce import (
    DegradeConfig,
    Policy,
    ProgramFilter,
    equivalent_programs,
    equivalent_python,
)

from . import canned

PROGRAMS = DegradeConfig(reasoning="summarise", code="equivalent-program")
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# inputs both functions of CODE_TEXT are run on
_INPUTS: list[tuple[Any, ...]] = [([1.0, 2.0, 4.0],), ([3, -1, 2], [1, 2, 3]), ([],), ([5, 5],), ([0.5], [0])]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[canned.Served]:
    yield from canned.serve(tmp_path_factory.mktemp("prog") / "gw.db", PROGRAMS)


def _body(api: str, stream: bool) -> dict[str, Any]:
    out = canned.body(api, stream)
    out["model"] += "-code"
    return out


def _outputs(source: str) -> list[Any]:
    """What the block's functions return on the test inputs."""
    env: dict[str, Any] = {}
    exec(compile(source, "<block>", "exec"), env)  # noqa: S102 - the test's own fixed code
    return [env["weighted_mean"](*args) for args in _INPUTS] + [env["top"](a[0], k) for a in _INPUTS for k in (1, 3)]


def _streamed_text(api: str, raw: str) -> str:
    out = []
    for line in raw.splitlines():
        if not line.startswith("data: {"):
            continue
        ev = json.loads(line[6:])
        if api == "chat.completions":
            out += [c["delta"].get("content") or "" for c in ev.get("choices", [])]
        elif api == "messages" and ev.get("type") == "content_block_delta" and ev["delta"].get("type") == "text_delta":
            out.append(ev["delta"]["text"])
        elif api == "responses" and ev.get("type") == "response.output_text.delta":
            out.append(ev["delta"])
    return "".join(out)


def _json_text(api: str, answer: dict[str, Any]) -> str:
    if api == "chat.completions":
        return str(answer["choices"][0]["message"]["content"])
    if api == "messages":
        return "".join(b["text"] for b in answer["content"] if b["type"] == "text")
    return "".join(c["text"] for o in answer["output"] if o["type"] == "message" for c in o["content"])


def _assert_equivalent(served: str) -> None:
    """The served answer: the Python block rewritten, computing the same; all else as it came."""
    original = canned.CODE_TEXT
    old, new = _BLOCK.findall(original)[0], _BLOCK.findall(served)[0]
    assert new != old
    assert _outputs(new) == _outputs(old)
    assert "# one weight per value; none: all equal" in new  # comments stay
    assert "def weighted_mean(xs, weights=None):" in new and "def top(xs, k=2):" in new  # the API stays
    # the text around it, the block that does not parse and the shell block come as they were
    assert served.replace(new, "") == original.replace(old, "")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", list(canned.ROUTES))
def test_an_account_in_good_standing_gets_the_upstreams_bytes(served: canned.Served, api: str, stream: bool) -> None:
    body = _body(api, stream)
    want = b"".join(canned.ANSWERS[canned.ROUTES[api]](body))
    assert b"weighted_mean" in want or b"weig" in want  # the answer has the code
    assert served.post(api, "good", body).content == want


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", list(canned.ROUTES))
def test_a_flagged_account_gets_its_programs_in_an_equivalent_form(served: canned.Served, api: str, stream: bool) -> None:
    for account in ("degraded", "throttled"):
        r = served.post(api, account, _body(api, stream))
        _assert_equivalent(_streamed_text(api, r.text) if stream else _json_text(api, r.json()))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_translated_answer_gets_its_programs_in_an_equivalent_form(served: canned.Served, stream: bool) -> None:
    body = {"model": "code-model", "stream": stream, "messages": [{"role": "user", "content": "write it"}]}
    good = served.post("chat.completions", "good", body)
    flagged = served.post("chat.completions", "degraded", body)
    if stream:
        assert _streamed_text("chat.completions", good.text) == canned.CODE_TEXT
        _assert_equivalent(_streamed_text("chat.completions", flagged.text))
    else:
        assert good.json()["choices"][0]["message"]["content"] == canned.CODE_TEXT
        _assert_equivalent(flagged.json()["choices"][0]["message"]["content"])


def test_the_form_is_drawn_per_answer() -> None:
    forms = {_BLOCK.findall(equivalent_programs(canned.CODE_TEXT))[0] for _ in range(20)}
    assert len(forms) > 5


def test_the_stream_filter_serves_the_same_text_for_any_split() -> None:
    want = equivalent_programs(canned.CODE_TEXT, random.Random(3))
    rng = random.Random(0)
    text = canned.CODE_TEXT
    for _ in range(100):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 40)))
        f = ProgramFilter(random.Random(3))
        got = "".join(f.feed(text[a:b]) for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)) + f.finish()
        assert got == want
    # text without a Python block passes byte for byte, split anywhere
    plain = "Use ``` for fences.\n   ~~ not one\n```sh\nls -la\n```\n````\nunclosed"
    for cut in range(len(plain)):
        f = ProgramFilter(random.Random(3))
        assert f.feed(plain[:cut]) + f.feed(plain[cut:]) + f.finish() == plain


@pytest.mark.parametrize("source", [
    "def f(x:\n    y = x +\n",  # does not parse
    "def f(a):\n    b = a + 1\n    return locals()\n",  # sees its own names
    "def f(a):\n    b = a + 1\n    return f'{b=}'\n",  # prints a name
    "def f(a):\n    global b\n    b = a\n",  # binds a global
    "x = 1\ny = x + 1\n",  # module-level names are the module's API
])
def test_code_a_rename_could_change_keeps_its_names(source: str) -> None:
    assert re.sub(r"[\"']", "", equivalent_python(source, random.Random(1))) == re.sub(r"[\"']", "", source)


def test_locals_are_renamed_consistently_across_nested_scopes() -> None:
    source = (
        "def outer(n):\n"
        "    acc_ = []\n"
        "    def add(v):\n"
        "        acc_.append(v * n)\n"
        "    for j in range(n):\n"
        "        add(j)\n"
        "    sq = [j * j for j in acc_ if (last := j)]\n"
        "    return acc_, sq, last\n"
    )
    for seed in range(10):
        out = equivalent_python(source, random.Random(seed))
        assert out != source and "acc_" not in out
        got: dict[str, Any] = {}
        want: dict[str, Any] = {}
        exec(out, got)  # noqa: S102
        exec(source, want)  # noqa: S102
        assert got["outer"](4) == want["outer"](4)


def test_the_config_names_the_code_defence() -> None:
    p = Policy(DegradeConfig(code="equivalent-program", throttle_degrades=False))
    for acc, action in (("a", "degrade"), ("b", "throttle"), ("c", "allow")):
        p.apply_verdicts([{"account_id": acc, "action": action}])
    assert [p.degrade.programs_for(p.decide(a)) for a in "abc"] == [True, False, False]
    assert not DegradeConfig().programs_for(p.decide("a"))  # unchanged by default
    with pytest.raises(ConfigError, match="code must be one of unchanged, equivalent-program"):
        DegradeConfig(code="obfuscate")  # type: ignore[arg-type]


def _canonical(source: str) -> str:
    """What a canonicalising harvester trains on: the program parsed and written back
    (`ast.unparse`: one quote style, no comments), every function's locals named v0, v1...
    in order of first appearance."""
    tree = ast.parse(source)
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        params = {a.arg for a in ast.walk(fn) if isinstance(a, ast.arg)}
        names: dict[str, str] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in params:
                names.setdefault(node.id, f"v{len(names)}")
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and node.id in names:
                node.id = names[node.id]
    return ast.unparse(tree)


def test_a_canonicalising_harvester_gets_the_original_program_back() -> None:
    # what the defence cannot stop, stated as a test: names and quotes carry no information
    # that survives parse, unparse and renaming in order of appearance
    source = _BLOCK.findall(canned.CODE_TEXT)[0]
    for seed in range(5):
        served = equivalent_python(source, random.Random(seed))
        assert served != source and _canonical(served) == _canonical(source)
