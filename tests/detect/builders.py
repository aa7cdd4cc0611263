"""Hand-built traffic for detector tests: a few accounts whose answers are known by construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pyarrow as pa

from distillguard.traffic import ACCOUNTS, EVENTS, conform

T0 = datetime(2026, 2, 2, tzinfo=UTC)
_ids = count()

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0"
SDK = "OpenAI/Python 1.54.0"

HUMAN_PROMPTS = [
    "what should i cook tonight with leftover rice and eggs",
    "can you help me write a birthday message for my sister",
    "explain why the sky is blue in simple words",
    "my tomato plants have yellow leaves, what is wrong",
    "suggest a name for a cafe near the beach",
    "how do i politely decline a meeting invitation",
    "what is the capital of australia and why is it not sydney",
    "recommend three books like the hobbit",
    "is it better to rent or buy a car in a big city",
    "write a short poem about autumn rain",
]


def events(
    account: str,
    n: int,
    *,
    start: datetime = T0,
    every: timedelta = timedelta(minutes=7),
    prompt: str | list[str] = "Solve step by step: what is {i} times {j}? Show your work.",
    system: str | None = None,
    ip: str | list[str] = "198.51.100.1",
    ua: str = SDK,
    turns: int = 1,
    tools: int = 0,
    model: str = "m1",
    completion_tokens: int = 800,
    max_tokens: int = 1024,
) -> list[dict[str, object]]:
    rows = []
    for k in range(n):
        text = prompt[k % len(prompt)] if isinstance(prompt, list) else prompt
        address = ip[k % len(ip)] if isinstance(ip, list) else ip
        rows.append(
            {
                "event_id": f"e{next(_ids)}",
                "ts": start + k * every,
                "account_id": account,
                "ip": address,
                "user_agent": ua,
                "endpoint": "chat.completions",
                "model": model,
                "system": system,
                "prompt": text.format(i=k * 7 + 3, j=k % 13 + 2),
                "turns": turns,
                "tools": tools,
                "prompt_tokens": 40,
                "completion_tokens": completion_tokens,
                "max_tokens": max_tokens,
                "temperature": 0.7,
                "status": 200,
                "latency_ms": 900.0,
            }
        )
    return rows


def event_table(rows: list[dict[str, object]]) -> pa.Table:
    rows = sorted(rows, key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    return conform("events", pa.Table.from_pylist(rows, schema=EVENTS.schema))


def account_table(rows: list[dict[str, object]]) -> pa.Table:
    return conform("accounts", pa.Table.from_pylist(rows, schema=ACCOUNTS.schema))


def account(
    account_id: str,
    *,
    created: datetime = T0 - timedelta(days=400),
    channel: str = "self_serve",
    email: str = "gmail.com",
    payment: str | None = None,
    country: str = "US",
    verified: bool = True,
) -> dict[str, object]:
    return {
        "account_id": account_id,
        "created_at": created,
        "signup_channel": channel,
        "email_domain": email,
        "payment_fingerprint": payment or f"pay-{account_id}",
        "country": country,
        "verified": verified,
    }
