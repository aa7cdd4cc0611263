"""End to end: a simulated hydra cluster sent through a running gateway gets throttled, then
blocked, by online detection on the gateway's own capture, while benign users keep being served."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import (
    Gateway,
    GatewayConfig,
    Store,
    issue_key,
)

from .support import ADMIN, detect_config_file, serving_gateway

SEED = 7
HYDRA_SYSTEM = "You are an expert tutor. Always reason step by step and show every step."
TEMPLATES = [
    "Solve step by step: a farmer has {i} hens and buys {j} more each week. How many after 4 weeks?",
    "Think step by step and show your work: what is {i} divided by {j} rounded to 2 places?",
]
HUMAN = [
    "what's a good recipe for banana bread", "help me write an email to my landlord about the heating",
    "why is the sky blue", "translate 'good morning' to french", "summarize the plot of hamlet",
    "tips for a job interview tomorrow", "how do I center a div in css", "is it safe to eat raw cookie dough",
]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
BENIGN_MAIL = ["gmail.com", "yahoo.com", "corp.com", "uni.edu"]


def hydra_signup(i: int) -> dict[str, Any]:
    """The i-th hydra account's signup: one channel and mail domain, two cards in turn, unverified."""
    return {"signup_channel": "education", "email_domain": "mail-hub.io",
            "payment_fingerprint": "card-7" if i % 2 == 0 else "card-9", "verified": False, "country": "US"}


def benign_signup(i: int) -> dict[str, Any]:
    """The i-th benign account's signup (i < 4): a mail domain and a card of its own, verified."""
    return {"signup_channel": "self_serve", "email_domain": BENIGN_MAIL[i], "payment_fingerprint": f"p{i}",
            "verified": True, "country": "US"}


def signed_up(store: Store, hydra: list[str], benign: list[str]) -> dict[str, str]:
    """Per account: a key issued after its signup (`hydra_signup`, `benign_signup`) is stored."""
    keys: dict[str, str] = {}
    for accounts, signup in ((hydra, hydra_signup), (benign, benign_signup)):
        for i, acc in enumerate(accounts):
            store.upsert_account(acc, **signup(i))
            keys[acc] = issue_key(store, acc).key
    return keys


@pytest.fixture
def online_gateway(tmp_path: Path) -> Iterator[tuple[str, Gateway]]:
    cfg = GatewayConfig(
        db=f"sqlite:///{tmp_path / 'online.db'}", admin_token=ADMIN, capture_interval=0.02,
        detect=True, detect_interval=0.2, detect_config=detect_config_file(tmp_path),
        # throttled accounts get one request a minute
        limits=LimitsConfig(account=LimitSet(300, None, None, None), throttle_factor=1 / 300),
    )
    with serving_gateway(cfg) as served:
        yield served


def test_hydra_is_throttled_then_blocked_while_benign_users_are_served(online_gateway: tuple[str, Gateway]) -> None:
    url, gw = online_gateway
    assert gw.online is not None, "online detection must be running"
    rng = random.Random(SEED)
    admin = {"authorization": f"Bearer {ADMIN}"}
    hydra, benign = [f"h{i}" for i in range(8)], [f"b{i}" for i in range(4)]
    keys: dict[str, str] = {}
    for i, acc in enumerate(hydra):
        httpx.post(url + "/admin/accounts", headers=admin, json={"account_id": acc, **hydra_signup(i)}).raise_for_status()
        keys[acc] = issue_key(gw.store, acc).key
    for i, acc in enumerate(benign):
        httpx.post(url + "/admin/accounts", headers=admin, json={"account_id": acc, **benign_signup(i)}).raise_for_status()
        keys[acc] = issue_key(gw.store, acc).key
    clients = {a: openai.OpenAI(base_url=url + "/v1", api_key=keys[a], max_retries=0) for a in hydra}
    web = httpx.Client(base_url=url)

    sent = 0
    history: dict[str, list[int]] = {a: [] for a in hydra + benign}
    actions: list[dict[str, str]] = []
    # Rounds until every hydra account has been answered 403 (the loop breaks then): where the
    # detector's background steps fall decides the round of the block, and a busy machine (a CI
    # runner) can push it past a fixed count, leaving no request to feel it.
    for _round in range(30):
        for _ in range(10):
            for acc in hydra:
                prompt = rng.choice(TEMPLATES).format(i=rng.randint(1, 99), j=rng.randint(1, 99))
                try:
                    clients[acc].chat.completions.create(model="m", messages=[{"role": "system", "content": HYDRA_SYSTEM}, {"role": "user", "content": prompt}], max_tokens=1024)
                    history[acc].append(200)
                except openai.APIStatusError as exc:
                    history[acc].append(exc.status_code)
                sent += 1
        for acc in benign:
            for _ in range(2):
                convo = [{"role": "user", "content": rng.choice(HUMAN)}, {"role": "assistant", "content": "Sure."}, {"role": "user", "content": rng.choice(HUMAN)}]
                r = web.post("/v1/chat/completions", json={"model": "m", "messages": convo}, headers={"authorization": f"Bearer {keys[acc]}", "user-agent": BROWSER})
                history[acc].append(r.status_code)
                sent += 1
        # let capture and one detector step catch up with everything sent so far
        deadline = time.monotonic() + 20
        while gw.online.events_seen < sent:
            assert time.monotonic() < deadline, f"online detection stalled: {gw.online.last_error}"
            time.sleep(0.05)
        actions.append({a: gw.policy.decide(a).action for a in hydra + benign})
        if all(history[h][-1] == 403 and actions[-1][h] == "block" for h in hydra):
            break

    for h in hydra:
        # every verdict the gateway applied, not just the ones this loop happened to sample
        seq = gw.policy.action_history(h)
        assert "throttle" in seq and seq[-1] == "block", f"{h}: {seq} (seed {SEED})"
        assert seq.index("throttle") < seq.index("block"), f"{h} must be throttled before it is blocked: {seq}"
    # the clients feel it: refused with 429 while throttled and 403 once blocked (how many
    # requests land in each stage depends on where the detector's background steps fall)
    assert any(429 in history[h] for h in hydra), f"throttling never bit: {history}"
    assert all(403 in history[h] and history[h][-1] == 403 for h in hydra), f"the block must reach every hydra account: {history}"
    for b in benign:
        assert set(history[b]) == {200}, f"benign {b} was refused: {history[b]}"
        assert {a[b] for a in actions} <= {"allow", "monitor"}
    verdicts = httpx.get(url + "/admin/verdicts", headers=admin).json()
    assert verdicts["accounts"]["h0"]["source"] == "verdict" and verdicts["online"]["events_seen"] >= sent - 1
