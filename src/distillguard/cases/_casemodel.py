"""What the console, case files and STIX export talk about: campaigns, accounts, templates,
shared attributes, and the small pure helpers around them (no DuckDB here)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from distillguard.share import TEMPLATE_SQL

#: Prompt categories, tried in this order (first match wins) on the lower-cased first 300
#: characters of a prompt; tool use comes from `tools`.
CAPABILITIES: tuple[tuple[str, str], ...] = (
    (
        "code",
        r"(\bdef\b|\bclass\b|python|javascript|typescript|\bsql\b|function|\bcode\b|program|"
        r"\bbug\b|compile|regex|\bjava\b|c\+\+|\brust\b|algorithm|implement)",
    ),
    (
        "math",
        r"(solve|equation|calculate|\bmath|integral|probability|how many|how much|"
        r"\d+\s*[-+*/^=]\s*\d+|percent|sum of|average)",
    ),
    (
        "reasoning",
        r"(step by step|step-by-step|\breason|think|explain why|prove|logic|chain of thought)",
    ),
    (
        "writing",
        r"(write|essay|story|poem|e-?mail|rewrite|summari[sz]e|translate|paraphrase)",
    ),
)

#: Attribute kinds an account can share with others, in display order.
ATTRIBUTE_KINDS: tuple[str, ...] = ("template", "ip", "net24", "payment", "email", "user_agent")

KIND_LABELS: dict[str, str] = {
    "template": "prompt template",
    "ip": "IP address",
    "net24": "IPv4 /24 range",
    "payment": "payment instrument",
    "email": "e-mail domain",
    "user_agent": "user agent",
}

KIND_PLURALS: dict[str, str] = {
    "template": "prompt templates",
    "ip": "IP addresses",
    "net24": "IPv4 /24 ranges",
    "payment": "payment instruments",
    "email": "e-mail domains",
    "user_agent": "user agents",
}

#: SQL of `mined_template` over a `prompt` column (the shared template fingerprint's).
_TMPL_SQL = TEMPLATE_SQL

_BUCKETS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=7),
)


@dataclass(frozen=True)
class Campaign:
    """One detected campaign with its aggregate numbers."""

    campaign_id: str
    score: float
    accounts: int
    events: int
    first_flagged_ts: datetime | None
    first_ts: datetime | None
    last_ts: datetime | None
    events_before_flag: int
    blocked: int
    reasons: list[str]
    evidence: dict[str, Any]

    @property
    def harvest_before_flag(self) -> float:
        """Share of the campaign's events that came before its accounts were flagged."""
        return self.events_before_flag / self.events if self.events else 0.0


@dataclass(frozen=True)
class Account:
    """One account: its verdict, its traffic numbers and who it is."""

    account_id: str
    score: float | None
    action: str | None
    campaign_id: str | None
    first_flagged_ts: datetime | None
    reasons: list[str]
    evidence: dict[str, Any]
    events: int
    first_ts: datetime | None
    last_ts: datetime | None
    ips: int
    user_agents: int
    keys: int
    models: int
    prompt_tokens: int
    completion_tokens: int
    single_turn_share: float | None
    events_before_flag: int
    profile: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Template:
    """A prompt template used by a campaign, with an example prompt."""

    template_id: str
    fingerprint: str | None
    example: str
    accounts: int
    events: int
    source: str  # "detector" (the scan's `templates` table) or "mined" (prompt prefixes)


@dataclass(frozen=True)
class Attribute:
    """Something several accounts share: an address, a range, a payment instrument, ..."""

    kind: str
    value: str
    members: int  # member accounts of the campaign that use it
    accounts: int  # all accounts in the log that use it
    events: int  # member events that carry it

    @property
    def specific(self) -> float:
        """Share of its users that are campaign members (1.0: nobody outside uses it)."""
        return self.members / self.accounts if self.accounts else 0.0


@dataclass(frozen=True)
class Link:
    """An edge of a campaign graph: account `src` uses attribute or account `dst`."""

    src: str
    dst: str
    kind: str
    weight: float


def _loads(text: Any, default: Any) -> Any:
    if text is None:
        return default
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return default


def _reasons(text: Any) -> list[str]:
    value = _loads(text, None)
    if value is None:
        return [text] if isinstance(text, str) and text else []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _evidence(text: Any) -> dict[str, Any]:
    value = _loads(text, {})
    return value if isinstance(value, dict) else {"evidence": value}


#: At most this many attribute nodes of each kind in a campaign graph.
GRAPH_KIND_LIMITS: dict[str, int] = {
    "template": 6,
    "net24": 6,
    "ip": 6,
    "payment": 6,
    "email": 4,
    "user_agent": 4,
}


def _graph_attributes(
    attrs: list[Attribute], limit: int, shown: dict[tuple[str, str], int] | None = None
) -> list[Attribute]:
    """Pick the attributes worth drawing: a few of each kind, addresses folded into ranges.

    `shown` counts, per (kind, value), the drawn accounts that use it (default: all members).
    """

    # Values mostly used outside the campaign (a popular browser, a big e-mail provider)
    # explain little: keep those at least 30% specific, the most users x specificity first.
    def users(a: Attribute) -> int:
        return shown.get((a.kind, a.value), 0) if shown is not None else a.members

    attrs = sorted(
        (a for a in attrs if a.specific >= 0.3),
        key=lambda a: (-users(a) * a.specific, a.kind, a.value),
    )
    nets = {a.value for a in attrs if a.kind == "net24"}
    taken: dict[str, int] = {}
    out: list[Attribute] = []
    for a in attrs:
        if a.kind == "ip" and a.value.rsplit(".", 1)[0] + ".0/24" in nets:
            continue
        if taken.get(a.kind, 0) >= GRAPH_KIND_LIMITS.get(a.kind, 4):
            continue
        taken[a.kind] = taken.get(a.kind, 0) + 1
        out.append(a)
    return out[:limit]


def fold_attributes(
    attrs: Sequence[Attribute], per_kind: int = 8
) -> tuple[list[Attribute], dict[str, int]]:
    """Keep at most `per_kind` attributes of each kind, dropping addresses inside a kept range.

    Returns:
        The attributes to show, and per kind how many were left out.
    """
    nets = {a.value for a in attrs if a.kind == "net24"}
    shown: list[Attribute] = []
    hidden: dict[str, int] = {}
    taken: dict[str, int] = {}
    for a in attrs:
        covered = a.kind == "ip" and a.value.rsplit(".", 1)[0] + ".0/24" in nets
        if covered or taken.get(a.kind, 0) >= per_kind:
            hidden[a.kind] = hidden.get(a.kind, 0) + 1
            continue
        taken[a.kind] = taken.get(a.kind, 0) + 1
        shown.append(a)
    return shown, hidden


def mined_template(prompt: str) -> str:
    """A prompt's mined template: its first five words (of its first 160 characters),
    lower-cased, digits folded to `#`. The same as `_TMPL_SQL`."""
    words = [w for w in re.split(r"[ \t\n\r\f\v]+", prompt[:160].lower()) if w]
    return re.sub(r"[0-9]+", "#", " ".join(words[:5]))


def mined_fingerprint(prompt: str) -> str:
    """The fingerprint of a prompt's mined template (`mined_template`).

    The same as the SQL of `CaseStore` (`'p5-' || left(sha256(tmpl), 16)`), so that partners
    running distillguard compute the same value for the same template.
    """
    return "p5-" + hashlib.sha256(mined_template(prompt).encode("utf-8")).hexdigest()[:16]


def _template_ids(evidence: dict[str, Any]) -> list[str]:
    """Template ids or fingerprints named in an evidence object, under any `*template*` key."""
    out: list[str] = []
    for key, value in evidence.items():
        if "template" not in key.lower():
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str | int):
                out.append(str(item))
            elif isinstance(item, dict):
                for k in ("template_id", "id", "fingerprint"):
                    if k in item:
                        out.append(str(item[k]))
    return out


def _campaign(r: tuple[Any, ...]) -> Campaign:
    return Campaign(
        campaign_id=str(r[0]),
        score=float(r[1] or 0.0),
        accounts=int(r[2] or 0),
        events=int(r[3] or 0),
        first_flagged_ts=r[4],
        first_ts=r[5],
        last_ts=r[6],
        events_before_flag=int(r[7] or 0),
        blocked=int(r[8] or 0),
        reasons=_reasons(r[9]),
        evidence=_evidence(r[10]),
    )


def _account(r: tuple[Any, ...], profile: dict[str, Any]) -> Account:
    return Account(
        account_id=str(r[0]),
        score=None if r[1] is None else float(r[1]),
        action=r[2],
        campaign_id=r[3],
        first_flagged_ts=r[4],
        reasons=_reasons(r[5]),
        evidence=_evidence(r[6]),
        events=int(r[7]),
        first_ts=r[8],
        last_ts=r[9],
        ips=int(r[10]),
        user_agents=int(r[11]),
        keys=int(r[12]),
        models=int(r[13]),
        prompt_tokens=int(r[14]),
        completion_tokens=int(r[15]),
        single_turn_share=None if r[16] is None else float(r[16]),
        events_before_flag=int(r[17]),
        profile=profile,
    )
