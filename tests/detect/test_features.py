"""Each fingerprint feature: one account that must trigger it, one that must not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from distillguard.detect import OnlineDetector
from distillguard.traffic import MODELS, conform

from .builders import BROWSER, HUMAN_PROMPTS, SDK, T0, account, account_table, event_table, events

HUMAN: dict[str, Any] = dict(prompt=HUMAN_PROMPTS, ua=BROWSER, turns=3, completion_tokens=150,
                            every=timedelta(hours=1), start=T0 + timedelta(hours=14))


def _features(rows: list[dict[str, object]], accts: list[dict[str, object]],
              models: pa.Table | None = None) -> dict[str, dict[str, float]]:
    det = OnlineDetector(accounts=account_table(accts), models=models)
    det.update(event_table(rows))
    f = det.assess().features
    return {aid: {k: float(v[i]) for k, v in f.items()} for aid, i in det.state.index.items()}


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("single_turn", dict(turns=1), {}),
    ("elicitation", dict(prompt="Think step by step and show your work: {i} + {j}"), {}),
    ("focus", dict(prompt="Write a python function that returns {i} * {j}"), {}),
    ("template", dict(prompt="Summarise this support ticket #{i} in one line: printer jam {j}"), {}),
    ("sdk", dict(ua=SDK), {}),
    ("capped", dict(completion_tokens=1024, max_tokens=1024), {}),
    ("ip_churn", dict(ip=[f"203.0.113.{i}" for i in range(9)]), {}),
]


@pytest.mark.parametrize(("feature", "trigger", "_"), CASES, ids=[c[0] for c in CASES])
def test_event_feature(feature: str, trigger: dict[str, Any], _: dict[str, Any]) -> None:
    calm = events("calm", 40, **HUMAN)
    loud = events("loud", 40, **{**HUMAN, **trigger})
    f = _features(calm + loud, [account("calm"), account("loud")])
    assert f["loud"][feature] >= 0.5, f["loud"]
    assert f["calm"][feature] < 0.5, f["calm"]


def test_tool_use_counts_towards_capability_focus() -> None:
    """An agent loop (requests that carry tool definitions) is capability focus even when its
    prompts are everyday chat, neither coding nor maths."""
    calm = events("calm", 40, **HUMAN)
    agent = events("agent", 40, **{**HUMAN, "tools": 3})
    f = _features(calm + agent, [account("calm"), account("agent")])
    assert f["agent"]["focus"] >= 0.5, f["agent"]
    assert f["calm"]["focus"] < 0.5, f["calm"]


def test_volume_is_requests_per_day_over_the_observed_span() -> None:
    calm = events("calm", 40, **HUMAN)
    loud = events("loud", 400, **{**HUMAN, "every": timedelta(minutes=6)})
    f = _features(calm + loud, [account("calm"), account("loud")])
    assert f["loud"]["volume"] >= 0.5 and f["loud"]["rate_per_day"] > 200
    assert f["calm"]["volume"] < 0.5


def test_night_activity_is_measured_in_the_account_country() -> None:
    # 03:00-05:00 UTC is night in Germany but evening in the US.
    start = T0 + timedelta(hours=3)
    rows = events("de", 40, **{**HUMAN, "start": start, "every": timedelta(minutes=3)})
    rows += events("us", 40, **{**HUMAN, "start": start, "every": timedelta(minutes=3)})
    f = _features(rows, [account("de", country="DE"), account("us", country="US")])
    assert f["de"]["night"] >= 0.5
    assert f["us"]["night"] < 0.5


def test_reaction_to_a_model_release() -> None:
    release = T0 + timedelta(days=2)
    models = conform("models", pa.Table.from_pylist(
        [{"model": "old", "released_at": T0 - timedelta(days=300)},
         {"model": "new", "released_at": release}], schema=MODELS.schema))
    fast = events("fast", 40, **{**HUMAN, "model": "new", "start": release + timedelta(hours=1),
                                  "every": timedelta(minutes=20)})
    slow = events("slow", 40, **{**HUMAN, "model": "old", "start": release + timedelta(hours=1),
                                  "every": timedelta(minutes=20)})
    f = _features(fast + slow, [account("fast"), account("slow")], models)
    assert f["fast"]["release"] >= 0.5
    assert f["slow"]["release"] < 0.5


@pytest.mark.parametrize(
    ("feature", "meta"),
    [
        ("new_account", dict(created=T0 - timedelta(days=2))),
        ("risky_channel", dict(channel="education")),
        ("unverified", dict(verified=False)),
    ],
)
def test_account_metadata_feature(feature: str, meta: dict[str, Any]) -> None:
    rows = events("plain", 20, **HUMAN) + events("marked", 20, **HUMAN)
    f = _features(rows, [account("plain"), account("marked", **meta)])
    assert f["marked"][feature] == 1.0
    assert f["plain"][feature] == 0.0


def test_an_address_whose_accounts_rotate_looks_more_like_a_proxy_pool_than_a_nat() -> None:
    from distillguard.detect._profile import account_totals, key_profiles
    from distillguard.detect._state import LINK_KINDS

    rows: list[dict[str, object]] = []
    accts = []
    for a in range(8):
        # Same traffic; the proxy accounts rotate through a pool, the NAT ones keep one address.
        rows += events(f"proxy{a}", 20, ip=[f"203.0.113.{(a + k) % 6}" for k in range(6)])
        rows += events(f"nat{a}", 20, ip="192.0.2.7")
        accts += [account(f"proxy{a}"), account(f"nat{a}")]
    det = OnlineDetector(accounts=account_table(accts))
    det.update(event_table(rows))
    a = det.assess()
    st = det.state
    h = a.features["ip_churn"]
    assert h[st.index["proxy0"]] == 1.0 and h[st.index["nat0"]] == 0.0
    profile = {}
    for sid in range(st.shared_keys):
        if st.sid_link[sid] == LINK_KINDS.index("ip"):
            profile[st.key_label[st.sid_code[sid]]] = sid
    churn = {"203.0.113.0": 1.0, "192.0.2.7": 0.0}
    sids = [profile[ip] for ip in churn]
    with_churn = key_profiles(st, account_totals(st), det.config, sids=np.array(sids),
                              ip_churn=np.array(list(churn.values())))
    assert with_churn[0] > with_churn[1]
    same = key_profiles(st, account_totals(st), det.config, sids=np.array(sids))
    assert with_churn[0] > same[0] and with_churn[1] == same[1]
