"""The traffic log format v1.1 (docs/format.md) as Arrow schemas.

This module is the contract: columns may be added, none may be renamed or
change meaning. Every reader and writer in the project goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Table:
    """One table of the format: its Arrow schema and which columns must be present."""

    name: str
    schema: pa.Schema
    required: frozenset[str]
    key: str | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


EVENTS = Table(
    "events",
    pa.schema(
        [
            ("event_id", pa.string()),
            ("ts", TS),
            ("account_id", pa.string()),
            ("key_id", pa.string()),
            ("ip", pa.string()),
            ("user_agent", pa.string()),
            ("endpoint", pa.string()),
            ("model", pa.string()),
            ("system", pa.string()),
            ("prompt", pa.string()),
            ("turns", pa.int32()),
            ("tools", pa.int32()),
            ("response", pa.string()),
            ("prompt_tokens", pa.int32()),
            ("completion_tokens", pa.int32()),
            ("max_tokens", pa.int32()),
            ("temperature", pa.float32()),
            ("status", pa.int16()),
            ("latency_ms", pa.float32()),
            # v1.1: the end user the client declared (a reseller's customer) and the batch a
            # request was submitted in (its ts is then the submission time)
            ("end_user", pa.string()),
            ("batch_id", pa.string()),
        ]
    ),
    frozenset({"event_id", "ts", "account_id", "model", "prompt"}),
    key="event_id",
)

ACCOUNTS = Table(
    "accounts",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("created_at", TS),
            ("signup_channel", pa.string()),
            ("email_domain", pa.string()),
            ("payment_fingerprint", pa.string()),
            ("country", pa.string()),
            ("verified", pa.bool_()),
        ]
    ),
    frozenset({"account_id"}),
    key="account_id",
)

MODELS = Table(
    "models",
    pa.schema([("model", pa.string()), ("released_at", TS)]),
    frozenset({"model"}),
    key="model",
)

LABELS = Table(
    "labels",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("label", pa.string()),
            ("campaign_id", pa.string()),
            ("persona", pa.string()),
        ]
    ),
    frozenset({"account_id", "label"}),
    key="account_id",
)

VERDICTS = Table(
    "verdicts",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("score", pa.float64()),
            ("action", pa.string()),
            ("campaign_id", pa.string()),
            ("first_flagged_ts", TS),
            ("reasons", pa.string()),
        ]
    ),
    frozenset({"account_id", "score", "action"}),
    key="account_id",
)

END_USER_VERDICTS = Table(
    "end_user_verdicts",
    pa.schema([*VERDICTS.schema, pa.field("end_user", pa.string())]),
    frozenset({"account_id", "end_user", "score", "action"}),
)

CAMPAIGNS = Table(
    "campaigns",
    pa.schema(
        [
            ("campaign_id", pa.string()),
            ("accounts", pa.int64()),
            ("events", pa.int64()),
            ("score", pa.float64()),
            ("first_flagged_ts", TS),
            ("reasons", pa.string()),
        ]
    ),
    frozenset({"campaign_id"}),
    key="campaign_id",
)

# Not in the v1 format document: analyst/admin actions that feed the next scan
# (agreed between the gateway, console and detector; an added table, as the format allows).
OVERRIDES = Table(
    "overrides",
    pa.schema(
        [
            ("account_id", pa.string()),
            ("action", pa.string()),
            ("ts", TS),
            ("by", pa.string()),
            ("note", pa.string()),
        ]
    ),
    frozenset({"account_id", "action"}),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (EVENTS, ACCOUNTS, MODELS, LABELS, VERDICTS, END_USER_VERDICTS, CAMPAIGNS, OVERRIDES)
}

ACTIONS = ("allow", "monitor", "throttle", "block")
FLAGGED_ACTIONS = frozenset({"throttle", "block"})
LABEL_VALUES = ("benign", "distill")
OVERRIDE_ACTIONS = ("allow", "monitor", "throttle", "block", "benign")
