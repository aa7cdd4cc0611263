"""A small hand-built log and scan (three campaigns, a few dozen benign accounts).

It lets the console, the case files and the STIX export be shown and tested without the
simulator or the detector: `write_sample_case(root)` writes `root/log` and `root/verdicts`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from distillguard.traffic import write_table

START = datetime(2026, 3, 2, tzinfo=UTC)
HOURS = 48


@dataclass(frozen=True)
class _Crew:
    campaign_id: str
    accounts: int
    template_id: str
    template: str
    fillers: tuple[str, ...]
    net: str  # "a.b.c" for a shared /24, addresses .10-.60
    user_agent: str
    payment: str | None  # one shared instrument, or None for one each
    email_domain: str
    per_hour: float
    flag_hour: int
    score: float


_CREWS = (
    _Crew(
        "C1",
        14,
        "T1",
        "Solve step by step and show your reasoning: {}",
        (
            "what is 17 * 23 + 4?",
            "a train travels 120 km in 1.5 hours; how fast is it?",
            "how many ways can 5 books be arranged on a shelf?",
            "what is the probability of two sixes in two rolls?",
            "if 3x + 7 = 22, what is x?",
        ),
        "203.0.113",
        "python-httpx/0.27 harvester",
        "pay_7f3a9c",
        "mailbox-relay.example",
        9.0,
        20,
        0.97,
    ),
    _Crew(
        "C2",
        7,
        "T2",
        "Write a Python function that {} Include type hints and tests.",
        (
            "parses an ISO date",
            "merges two sorted lists",
            "computes a rolling median",
            "validates an IPv4 address",
            "flattens a nested dict",
        ),
        "198.51.100",
        "curl/8.4.0",
        None,
        "quickinbox.example",
        6.0,
        30,
        0.88,
    ),
    _Crew(
        "C3",
        4,
        "T3",
        "Think carefully and explain why {}",
        (
            "the sky is blue.",
            "ice floats on water.",
            "prime numbers never end.",
            "bridges expand in summer.",
        ),
        "192.0.2",
        "Go-http-client/1.1",
        "pay_19bd02",
        "protonmail.example",
        3.0,
        40,
        0.62,
    ),
)

_BENIGN_PROMPTS = (
    "Can you help me draft a polite e-mail to my landlord about a leaking tap?",
    "What are some good vegetarian recipes for a weeknight dinner?",
    "Summarise the main causes of the French revolution in a paragraph.",
    "My React component re-renders too often, what could cause that?",
    "Translate 'where is the train station' into Spanish and German.",
    "Suggest a name for a bakery that sells sourdough.",
    "Explain the difference between a Roth IRA and a traditional IRA.",
    "Write a short poem about autumn leaves.",
    "How do I centre a div with CSS grid?",
    "What should I pack for a three-day hike in the Alps?",
)
_BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1",
    "openai-python/1.35.0",
)


def _fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_sample_case(root: str | Path, seed: int = 7, benign: int = 30) -> tuple[Path, Path]:
    """Write a small traffic log and a matching scan output under `root`.

    Args:
        root: directory to write `log/` and `verdicts/` into (created if needed).
        seed: seed of the generator, so that the same call writes the same data.
        benign: number of benign accounts.

    Returns:
        `(log_dir, verdicts_dir)`.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    log_dir, verdicts_dir = root / "log", root / "verdicts"
    events: dict[str, list[object]] = {
        k: []
        for k in (
            "event_id",
            "ts",
            "account_id",
            "key_id",
            "ip",
            "user_agent",
            "endpoint",
            "model",
            "prompt",
            "turns",
            "tools",
            "prompt_tokens",
            "completion_tokens",
            "status",
        )
    }
    accounts: dict[str, list[object]] = {
        k: []
        for k in (
            "account_id",
            "created_at",
            "signup_channel",
            "email_domain",
            "payment_fingerprint",
            "country",
            "verified",
        )
    }
    verdicts: dict[str, list[object]] = {
        k: []
        for k in (
            "account_id",
            "score",
            "action",
            "campaign_id",
            "first_flagged_ts",
            "reasons",
            "evidence",
        )
    }
    labels: dict[str, list[object]] = {
        k: [] for k in ("account_id", "label", "campaign_id", "persona")
    }
    n = 0

    def emit(account: str, hour: float, ip: str, ua: str, prompt: str, turns: int) -> None:
        nonlocal n
        n += 1
        events["event_id"].append(f"e{n:06d}")
        events["ts"].append(START + timedelta(hours=hour))
        events["account_id"].append(account)
        events["key_id"].append(f"k-{account}")
        events["ip"].append(ip)
        events["user_agent"].append(ua)
        events["endpoint"].append("chat.completions")
        events["model"].append("frontier-1")
        events["prompt"].append(prompt)
        events["turns"].append(turns)
        events["tools"].append(0)
        events["prompt_tokens"].append(len(prompt) // 4 + 1)
        events["completion_tokens"].append(int(rng.integers(200, 900)))
        events["status"].append(200)

    templates = []
    links: dict[str, list[object]] = {"src": [], "dst": [], "kind": [], "weight": []}
    for crew in _CREWS:
        members = [f"{crew.campaign_id.lower()}-acct-{i:02d}" for i in range(crew.accounts)]
        member_set = set(members)
        flag_ts = START + timedelta(hours=crew.flag_hour)
        for i, acct in enumerate(members):
            accounts["account_id"].append(acct)
            accounts["created_at"].append(START - timedelta(hours=int(rng.integers(1, 6))))
            accounts["signup_channel"].append("self_serve")
            accounts["email_domain"].append(crew.email_domain)
            accounts["payment_fingerprint"].append(crew.payment or _fp(acct))
            accounts["country"].append("XX")
            accounts["verified"].append(False)
            count = int(rng.poisson(crew.per_hour * HOURS / crew.accounts * 3))
            for _ in range(count):
                hour = float(rng.uniform(0, HOURS))
                ip = f"{crew.net}.{10 + int(rng.integers(0, 50))}"
                filler = crew.fillers[int(rng.integers(0, len(crew.fillers)))]
                emit(acct, hour, ip, crew.user_agent, crew.template.format(filler), 1)
            verdicts["account_id"].append(acct)
            verdicts["score"].append(round(crew.score - 0.01 * (i % 5), 3))
            verdicts["action"].append("block" if crew.score > 0.8 else "throttle")
            verdicts["campaign_id"].append(crew.campaign_id)
            verdicts["first_flagged_ts"].append(flag_ts + timedelta(minutes=7 * i))
            example = crew.template.format(crew.fillers[0])
            verdicts["reasons"].append(
                json.dumps(
                    [
                        f"shares prompt template {crew.template_id} with {crew.accounts - 1} "
                        f"other accounts (example: '{example[:60]}')",
                        f"uses {crew.net}.0/24 like {crew.accounts - 1} other accounts",
                        f"{100:.0f}% single-turn requests over {count} events",
                    ]
                )
            )
            verdicts["evidence"].append(
                json.dumps(
                    {
                        "templates": [crew.template_id],
                        "template_share": 1.0,
                        "single_turn_share": 1.0,
                        "shared_range": f"{crew.net}.0/24",
                    }
                )
            )
            labels["account_id"].append(acct)
            labels["label"].append("distill")
            labels["campaign_id"].append(crew.campaign_id)
            labels["persona"].append("hydra_worker")
            if i:
                links["src"].append(members[0])
                links["dst"].append(acct)
                links["kind"].append("template")
                links["weight"].append(1.0)
        templates.append(
            {
                "template_id": crew.template_id,
                "fingerprint": _fp(crew.template),
                "example": crew.template.format(crew.fillers[0]),
                "accounts": crew.accounts,
                "events": sum(1 for a in events["account_id"] if str(a) in member_set),
            }
        )
    for i in range(benign):
        acct = f"user-{i:03d}"
        accounts["account_id"].append(acct)
        accounts["created_at"].append(START - timedelta(days=int(rng.integers(10, 400))))
        accounts["signup_channel"].append("self_serve" if i % 3 else "enterprise")
        accounts["email_domain"].append("gmail.com" if i % 2 else f"corp{i}.example")
        accounts["payment_fingerprint"].append(_fp(acct))
        accounts["country"].append("DE" if i % 2 else "US")
        accounts["verified"].append(True)
        ua = _BROWSERS[i % len(_BROWSERS)]
        if i in (7, 8):  # developers who script with curl, like campaign C2 (a hard negative)
            ua = "curl/8.4.0"
        ip = f"10.{i}.0.{1 + i % 200}"
        # A classroom: five accounts behind one NAT address (a hard negative).
        if i < 5:
            ip = "100.64.0.1"
        for _ in range(int(rng.integers(5, 40))):
            hour = float(rng.uniform(0, HOURS))
            prompt = _BENIGN_PROMPTS[int(rng.integers(0, len(_BENIGN_PROMPTS)))]
            if i == 9:  # a student who opens like campaign C3 (its template is not C3's alone)
                prompt = "Think carefully and explain why " + prompt[0].lower() + prompt[1:]
            emit(acct, hour, ip, ua, prompt, int(rng.integers(1, 6)))
        score = round(float(rng.uniform(0.0, 0.4)), 3)
        verdicts["account_id"].append(acct)
        verdicts["score"].append(score)
        verdicts["action"].append("monitor" if score > 0.3 else "allow")
        verdicts["campaign_id"].append(None)
        verdicts["first_flagged_ts"].append(None)
        verdicts["reasons"].append(
            json.dumps(
                []
                if score <= 0.3
                else [f"volume {score * 100:.0f}% above its sign-up channel's median"]
            )
        )
        verdicts["evidence"].append(json.dumps({}))
        labels["account_id"].append(acct)
        labels["label"].append("benign")
        labels["campaign_id"].append(None)
        labels["persona"].append("classroom" if i < 5 else "casual")

    order = np.argsort(np.array([t.timestamp() for t in events["ts"]]), kind="stable")  # type: ignore[attr-defined]
    ev_table = pa.table(events).take(pa.array(order))
    write_table(log_dir, "events", ev_table)
    write_table(log_dir, "accounts", pa.table(accounts))
    write_table(log_dir, "labels", pa.table(labels))
    v = pa.table(verdicts)
    write_table(verdicts_dir, "verdicts", v)
    campaigns: dict[str, list[object]] = {
        k: []
        for k in (
            "campaign_id",
            "accounts",
            "events",
            "score",
            "first_flagged_ts",
            "reasons",
            "evidence",
        )
    }
    per_account = {str(a): 0 for a in verdicts["account_id"]}
    for a in events["account_id"]:
        per_account[str(a)] += 1
    for crew in _CREWS:
        members = [
            str(a)
            for a, c in zip(verdicts["account_id"], verdicts["campaign_id"], strict=True)
            if c == crew.campaign_id
        ]
        campaigns["campaign_id"].append(crew.campaign_id)
        campaigns["accounts"].append(len(members))
        campaigns["events"].append(sum(per_account[m] for m in members))
        campaigns["score"].append(crew.score)
        campaigns["first_flagged_ts"].append(START + timedelta(hours=crew.flag_hour))
        campaigns["reasons"].append(
            json.dumps(
                [
                    f"{len(members)} accounts share prompt template {crew.template_id}",
                    f"{len(members)} accounts use addresses in {crew.net}.0/24",
                    f"all {len(members)} accounts created within 5 hours of each other",
                ]
            )
        )
        campaigns["evidence"].append(json.dumps({"templates": [crew.template_id]}))
    write_table(verdicts_dir, "campaigns", pa.table(campaigns))
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(templates), verdicts_dir / "templates.parquet")
    pq.write_table(pa.table(links), verdicts_dir / "links.parquet")
    return log_dir, verdicts_dir
