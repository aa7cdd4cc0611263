"""Tool calls in the captured answer.

The traffic log keeps one text per answer (`events.response`), so the calls an answer makes
(OpenAI `tool_calls`, Anthropic `tool_use` blocks, Responses `function_call` and
`custom_tool_call` items) are written into it after the answer's text, one line per call, in
the order the answer makes them:

    <tool_call name="get_weather">{"city":"Paris"}</tool_call>

The name is a JSON string; the arguments are compact JSON (key order kept) when they parse,
else the text exactly as the upstream sent it (a stream cut short). A JSON answer and the
same answer streamed are captured alike. The arguments reach the client untouched (they
are not watermarked: rewriting a JSON argument could break the client's tool).
"""

from __future__ import annotations

from typing import Any

import orjson


def _compact(arguments: Any) -> str:
    if not isinstance(arguments, str):
        return orjson.dumps(arguments).decode()
    try:
        return orjson.dumps(orjson.loads(arguments)).decode()
    except orjson.JSONDecodeError:
        return arguments


def tool_call_line(name: Any, arguments: Any) -> str:
    """One call as the traffic log's response text holds it."""
    return f"<tool_call name={orjson.dumps(str(name or '')).decode()}>{_compact(arguments)}</tool_call>"


def with_tool_calls(text: str, calls: list[tuple[Any, Any]]) -> str:
    """`text`, then one line per (name, arguments) call."""
    lines = [tool_call_line(n, a) for n, a in calls]
    return "\n".join([text, *lines] if text else lines)


class StreamedCalls:
    """Tool calls assembled from a stream's pieces, keyed by the stream's own index."""

    def __init__(self) -> None:
        self._names: dict[Any, Any] = {}
        self._args: dict[Any, list[str]] = {}

    def start(self, key: Any, name: Any) -> None:
        """A call begins (its name may come later, or never)."""
        if name:
            self._names[key] = name
        self._args.setdefault(key, [])

    def add(self, key: Any, piece: Any) -> None:
        """A piece of the call's arguments."""
        if isinstance(piece, str):
            self._args.setdefault(key, []).append(piece)

    def complete(self, key: Any, name: Any, arguments: Any) -> None:
        """The whole call, where the stream restates it (it replaces the pieces)."""
        self.start(key, name)
        self._args[key] = [arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()]

    def calls(self) -> list[tuple[Any, Any]]:
        return [(self._names.get(k, ""), "".join(parts)) for k, parts in self._args.items()]
