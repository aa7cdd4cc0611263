"""The in-process detector survives a restart: it resumes from its checkpoint plus the events
captured after it, never from zero, and a restarted gateway applies what it knew at once."""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from distillguard.enforce import LimitsConfig, LimitSet, Policy
from distillguard.gateway import (
    Gateway,
    GatewayConfig,
    OnlineLoop,
    Store,
    issue_key,
)

from .support import ADMIN, detect_config_file, start_gateway
from .test_detector import fill, log_rows, store  # noqa: F401 - fixtures
from .test_online import HYDRA_SYSTEM, TEMPLATES

SEED = 5
HYDRA = [f"h{i}" for i in range(8)]


def gateway_config(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig(db=f"sqlite:///{tmp_path / 'resume.db'}", admin_token=ADMIN, capture_interval=0.02,
                         detect=True, detector="inprocess", detect_interval=0.2, detect_config=detect_config_file(tmp_path),
                         detect_checkpoint_interval=3600,  # only the clean stop checkpoints here
                         limits=LimitsConfig(account=LimitSet(300, None, None, None), throttle_factor=1 / 300))


def flagged(gw: Gateway) -> dict[str, str]:
    return {a: gw.policy.decide(a).action for a in HYDRA}


def test_a_restarted_gateway_keeps_its_detectors_state(tmp_path: Path) -> None:
    """A hydra throttled before a restart is still throttled (or blocked) by the restarted
    gateway before it sends another request, and the detector resumed from its checkpoint."""
    cfg = gateway_config(tmp_path)
    srv, gw = start_gateway(cfg)
    url = f"http://127.0.0.1:{srv.server.config.port}"
    rng = random.Random(SEED)
    try:
        for i, acc in enumerate(HYDRA):
            gw.store.upsert_account(acc, signup_channel="education", email_domain="mail-hub.io",
                                    payment_fingerprint=f"card-{i % 2}", verified=False, country="US")
        clients = {a: openai.OpenAI(base_url=url + "/v1", api_key=issue_key(gw.store, a).key, max_retries=0) for a in HYDRA}
        for _round in range(30):
            for _ in range(10):
                for acc in HYDRA:
                    prompt = rng.choice(TEMPLATES).format(i=rng.randint(1, 99), j=rng.randint(1, 99))
                    with contextlib.suppress(openai.APIStatusError):
                        clients[acc].chat.completions.create(model="m", max_tokens=1024, messages=[
                            {"role": "system", "content": HYDRA_SYSTEM}, {"role": "user", "content": prompt}])
            deadline = time.monotonic() + 20
            while gw.online.events_seen < gw.capture.written or gw.capture.queue.qsize():
                assert time.monotonic() < deadline, f"online detection stalled: {gw.online.last_error}"
                time.sleep(0.05)
            if all(a != "allow" for a in flagged(gw).values()):
                break
        before = flagged(gw)
        assert set(before.values()) <= {"throttle", "block"}, f"the hydra was not flagged: {before} (seed {SEED})"
    finally:
        srv.stop()  # a clean stop checkpoints
    stored = Store(cfg.db).count_events()
    assert gw.online.events_seen == stored

    srv, gw = start_gateway(cfg)
    try:
        assert gw.online is not None
        svc = gw.online.service
        assert svc.restored_from is not None and svc.restored_from > 0, "the detector started from zero"
        assert svc.events_seen == stored  # the checkpoint holds every event folded before the stop
        deadline = time.monotonic() + 20
        while gw.online.updates < 1:
            assert time.monotonic() < deadline, f"no detection step after the restart: {gw.online.last_error}"
            time.sleep(0.05)
        after = flagged(gw)
        assert set(after.values()) <= {"throttle", "block"}, f"the restarted gateway forgot the hydra: {after}"
        assert gw.online.events_seen == stored, "events folded twice or lost across the restart"
    finally:
        srv.stop()


def test_the_inprocess_detector_resumes_from_its_checkpoint_plus_later_events(
        store: Store, log_rows: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:  # noqa: F811 - fixtures
    """A detector checkpointed half-way, then fed the rest and lost without a checkpoint (a
    kill -9), resumes from the checkpoint and reads the rest again from the capture: it ends
    with the verdicts of the detector that never stopped, and applies them to a new policy."""
    rows, accounts = log_rows
    fill(store, [], [dict(a) for a in accounts])
    half = len(rows) // 2

    def loop() -> OnlineLoop:
        online = OnlineLoop.create(Policy(), 0.05, None, store, checkpoint_interval=3600)
        assert online is not None
        online.warm()
        return online

    first = loop()
    store.insert_events(rows[:half])
    first.step()
    first.step()  # on PostgreSQL a step reads up to the top seen one step earlier
    assert first.events_seen == half
    first.service.checkpoint()
    at = first.service.cursor
    store.insert_events(rows[half:])
    first.step()
    first.step()
    assert first.events_seen == len(rows)
    want = {r["account_id"]: r["action"] for r in first.detector.verdicts().select(["account_id", "action"]).to_pylist()}
    assert {"throttle", "block"} & set(want.values()), "the log must have flagged accounts"

    second = loop()  # `first` is dropped without a checkpoint
    assert second.service.restored_from == at
    assert second.events_seen == half, "resumed from zero, or from somewhere other than the checkpoint"
    second.step()
    second.step()
    assert second.events_seen == len(rows)
    got = {r["account_id"]: r["action"] for r in second.detector.verdicts().select(["account_id", "action"]).to_pylist()}
    assert got == want
    flagged_accounts = {a for a, x in want.items() if x in ("throttle", "block")}
    assert all(second.policy.decide(a).action in ("throttle", "block") for a in flagged_accounts)


def test_bad_detector_settings_are_reported_together() -> None:
    from distillguard._errors import ConfigError

    with pytest.raises(ConfigError) as err:
        GatewayConfig(detect_checkpoint_interval=-1, detector_nice=-5)
    assert "detect_checkpoint_interval" in str(err.value) and "detector_nice" in str(err.value)
