"""A harvesting campaign's batches are judged at submission, before they run: online detection
on the gateway sees the batches' requests as they are accepted, and the answers the runner then
gets for them are served under the verdict (degraded, or refused once blocked)."""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import FakeUpstream, Gateway, GatewayConfig, issue_key

from .support import ADMIN, detect_config_file, serving_gateway
from .test_online import HYDRA_SYSTEM, TEMPLATES, hydra_signup

SEED = 11


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Gateway]]:
    cfg = GatewayConfig(db=f"sqlite:///{tmp_path / 'bd.db'}", admin_token=ADMIN, capture_interval=0.02, detect=True,
                        detect_interval=0.5, detect_config=detect_config_file(tmp_path), batch_rate=100.0,
                        limits=LimitsConfig(account=LimitSet(None, 100_000, None, None)))
    with serving_gateway(cfg, FakeUpstream(reasoning=True)) as served:
        yield served


def test_campaign_batches_are_judged_before_they_run(gateway: tuple[str, Gateway]) -> None:
    url, gw = gateway
    assert gw.online is not None
    rng = random.Random(SEED)
    admin = {"authorization": f"Bearer {ADMIN}"}
    hydra = [f"h{i}" for i in range(8)]
    batches: dict[str, str] = {}
    clients: dict[str, openai.OpenAI] = {}
    for i, acc in enumerate(hydra):
        httpx.post(url + "/admin/accounts", headers=admin, json={"account_id": acc, **hydra_signup(i)}).raise_for_status()
        clients[acc] = openai.OpenAI(base_url=url + "/v1", api_key=issue_key(gw.store, acc).key, max_retries=0, timeout=20)
    for acc in hydra:
        lines = [{"custom_id": f"q{j}", "method": "POST", "url": "/v1/chat/completions", "body": {
            "model": "m", "max_tokens": 1024, "messages": [{"role": "system", "content": HYDRA_SYSTEM},
                                                            {"role": "user", "content": rng.choice(TEMPLATES).format(i=rng.randint(1, 99), j=rng.randint(1, 99))}]}}
                 for j in range(40)]
        c = clients[acc]
        f = c.files.create(file=("b.jsonl", "\n".join(json.dumps(x) for x in lines).encode()), purpose="batch")
        with contextlib.suppress(openai.PermissionDeniedError):  # blocked before this batch: refused at submission
            batches[acc] = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id
    # every batch ends; none of the campaign's answers carries the reasoning trace
    deadline = time.monotonic() + 60
    outputs: list[dict[str, Any]] = []
    for acc, bid in batches.items():
        c = clients[acc]
        while (b := c.batches.retrieve(bid)).status != "completed":
            assert time.monotonic() < deadline, b
            time.sleep(0.1)
        for fid in (b.output_file_id, b.error_file_id):
            if fid:
                outputs += [json.loads(x) for x in c.files.content(fid).text.splitlines()]
    actions = {a: gw.policy.action_history(a) for a in hydra}
    unjudged = {a: seq for a, seq in actions.items() if not seq or seq[-1] not in ("throttle", "degrade", "block")}
    assert not unjudged, (unjudged, sorted(batches))
    served = [o["response"]["body"]["choices"][0]["message"] for o in outputs if o["response"] and o["response"]["status_code"] == 200]
    assert not [m for m in served if m.get("reasoning_content")], f"{len(served)} answers; actions {actions}"
    assert gw.online.events_seen >= 40 * len(batches)
