"""End to end through a running gateway: a flagged end user is refused by name while the
reseller's other customers are served, and once a campaign is flagged a fresh account of the
campaign is refused at its first request while a fresh benign account is served."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import Gateway, GatewayConfig, issue_key

from .support import ADMIN, detect_config_file, serving_gateway
from .test_online import BROWSER, HUMAN, HYDRA_SYSTEM, TEMPLATES

SEED = 11
ADMIN_H = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Gateway]]:
    # A match at the first request blocks here (the shipped default throttles), so the test
    # can see the refusal on that very request.
    cfg = GatewayConfig(
        db=f"sqlite:///{tmp_path / 'first.db'}", admin_token=ADMIN, capture_interval=0.02,
        detect=True, detect_interval=0.2, detect_config=detect_config_file(tmp_path, block_on_match=True),
        limits=LimitsConfig(account=LimitSet(300, None, None, None), throttle_factor=1 / 300),
    )
    with serving_gateway(cfg) as served:
        yield served


def _account(url: str, gw: Gateway, acc: str, **meta: object) -> str:
    body = {"account_id": acc, "signup_channel": "self_serve", "email_domain": "corp.example",
            "payment_fingerprint": f"p-{acc}", "verified": True, "country": "US", **meta}
    httpx.post(url + "/admin/accounts", headers=ADMIN_H, json=body).raise_for_status()
    return issue_key(gw.store, acc).key


def _chat(web: httpx.Client, key: str, prompt: str, system: str | None = None, user: str | None = None,
          ua: str = "OpenAI/Python 1.54.0") -> httpx.Response:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    body: dict[str, object] = {"model": "m", "messages": messages, "max_tokens": 1024}
    if user is not None:
        body["user"] = user
    return web.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}", "user-agent": ua})


def test_a_flagged_end_user_is_refused_by_name_and_the_other_customers_are_served(
        gateway: tuple[str, Gateway]) -> None:
    url, gw = gateway
    key = _account(url, gw, "reseller", signup_channel="reseller")
    gw.policy.apply_verdicts([{"account_id": "reseller", "action": "throttle", "end_users_apart": True}])
    gw.policy.apply_end_user_verdicts([{"account_id": "reseller", "end_user": "op-1", "action": "block"}])
    web = httpx.Client(base_url=url)
    refused = _chat(web, key, "hello", user="op-1")
    assert refused.status_code == 403
    err = refused.json()["error"]
    assert err["code"] == "end_user_blocked" and "'op-1'" in err["message"] and "reseller" in err["message"]
    assert _chat(web, key, "hello", user="cust-7").status_code == 200


def test_a_campaigns_fresh_account_is_refused_at_its_first_request(gateway: tuple[str, Gateway]) -> None:
    url, gw = gateway
    assert gw.online is not None
    rng = random.Random(SEED)
    web = httpx.Client(base_url=url)
    hydra = [f"h{i}" for i in range(8)]
    keys = {a: _account(url, gw, a, signup_channel="education", email_domain="mail-hub.io",
                        payment_fingerprint="card-7", verified=False) for a in hydra}
    sent = 0
    for _round in range(30):
        for _ in range(10):
            for acc in hydra:
                prompt = rng.choice(TEMPLATES).format(i=rng.randint(1, 99), j=rng.randint(1, 99))
                _chat(web, keys[acc], prompt, HYDRA_SYSTEM)
                sent += 1
        deadline = time.monotonic() + 20
        while gw.online.events_seen < sent:
            assert time.monotonic() < deadline, f"online detection stalled: {gw.online.last_error}"
            time.sleep(0.05)
        if all(gw.policy.decide(h).action in ("throttle", "block") for h in hydra) and gw.policy.checks_first_requests:
            break
    assert gw.policy.checks_first_requests, "the detector published no campaign keys"
    # Both newcomers come from addresses of their own (the hydra's is 127.0.0.1, which is a
    # campaign key too): the recruit is known by the campaign's prompts alone.
    elsewhere = {a: httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=a))
                 for a in ("127.0.0.2", "127.0.0.3")}
    fresh = _account(url, gw, "recruit", signup_channel="education", verified=False)
    first = _chat(elsewhere["127.0.0.2"], fresh, TEMPLATES[0].format(i=5, j=6), HYDRA_SYSTEM)
    assert first.status_code == 403, first.text
    assert "first request" in first.json()["error"]["message"]
    benign = _account(url, gw, "newcomer")
    assert _chat(elsewhere["127.0.0.3"], benign, rng.choice(HUMAN), ua=BROWSER).status_code == 200
