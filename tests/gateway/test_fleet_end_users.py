"""The fleet's detector carries end users' verdicts and campaign keys to the replicas that follow
it (`detector = "child"` or `"remote"`): a flagged end user is refused by name on a replica
while another customer of the same account is served, and a fresh account of a flagged
campaign is refused at its first request.

Runs on SQLite and on the real PostgreSQL (own table prefix, dropped afterwards); the events are
written into the capture as replicas would have written them, then judged by a
`DetectorService` stepped here."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import (
    DetectorService,
    FakeUpstream,
    Gateway,
    GatewayConfig,
    Router,
    Store,
    VerdictTables,
    create_app,
    issue_key,
)

from .support import ADMIN, ServerThread, detect_config_file, free_port

FLAGGED = ("throttle", "block")


def carrier_scene() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A blocked hydra, and a reseller passing the hydra's prompts for two of its 40 customers
    (tests/detect's scene), as capture rows and account rows."""
    from detect import scenes
    from detect.builders import account_table, event_table

    hydra_rows, hydra_accts = scenes.hydra(prompts=scenes.REPERTOIRE)
    res_rows, res_accts = scenes.reseller("carrier", 0.3)
    for k, r in enumerate(res_rows):
        r["end_user"] = f"op-{k % 2}" if r["system"] == scenes.HYDRA_SYSTEM else f"cust-{k % 40}"
    rows = []
    for e in sorted(event_table(hydra_rows + res_rows).to_pylist(), key=lambda e: e["ts"]):
        e.pop("batch_id", None)
        rows.append({**e, "ts_us": int(e.pop("ts").timestamp() * 1_000_000)})
    return rows, account_table(hydra_accts + res_accts).to_pylist()


def test_a_replica_refuses_a_flagged_end_user_and_a_campaigns_fresh_account(
        store_db: tuple[str, str], tmp_path: Path) -> None:
    from detect import scenes

    url, prefix = store_db
    store = Store(url, prefix)
    rows, accounts = carrier_scene()
    for a in accounts:
        created = a.pop("created_at")
        store.upsert_account(a.pop("account_id"), created_us=int(created.timestamp() * 1e6), **a)
    store.insert_events(rows)
    # a first-request match blocks here (the shipped default throttles), so the refusal shows
    # on that very request
    detect_config = detect_config_file(tmp_path, short_throttle=False, block_on_match=True)
    end_us = rows[-1]["ts_us"] + 1  # the log's own clock
    svc = DetectorService(store, detect_config, interval=0.05, checkpoint_interval=3600, clock=lambda: end_us)
    for _ in range(2):  # on PostgreSQL a step reads up to the top seen one step earlier
        svc.step()
    users = {(r["account_id"], r["end_user"]): r["action"] for r in svc.detector.end_user_verdicts().to_pylist()}
    assert {users[("carrier", "op-0")], users[("carrier", "op-1")]} <= set(FLAGGED)
    assert not {a for (_, eu), a in users.items() if eu.startswith("cust-")} & set(FLAGGED)
    assert svc.published_keys is not None and svc.published_keys[0], "no campaign keys published"

    # throttled principals get one request a minute
    cfg = GatewayConfig(db=url, table_prefix=prefix, admin_token=ADMIN, capture_interval=0.02,
                        detect=True, detector="remote",
                        limits=LimitsConfig(account=LimitSet(300, None, None, None), throttle_factor=1 / 300))
    router = Router()
    router.add("*", FakeUpstream())
    gw = Gateway(cfg, router=router)
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    try:
        deadline = time.monotonic() + 20
        while gw.follower is None or gw.follower.version < svc.version:
            assert time.monotonic() < deadline, "the replica did not follow the detector's version"
            time.sleep(0.05)
        decision = gw.policy.decide("carrier", "op-0")
        assert decision.action == users[("carrier", "op-0")] and decision.end_user == "op-0"
        assert gw.policy.decide("carrier", "cust-7").action not in FLAGGED
        assert gw.policy.checks_first_requests
        web = httpx.Client(base_url=f"http://127.0.0.1:{srv.server.config.port}", timeout=10)
        key = issue_key(store, "carrier").key

        def chat(key: str, prompt: str, system: str | None = None, user: str | None = None) -> httpx.Response:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            body: dict[str, object] = {"model": "m", "messages": messages}
            if user is not None:
                body["user"] = user
            return web.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})

        refused = [chat(key, "hello", user="op-0").status_code for _ in range(3)]
        assert set(refused) & {403, 429}, refused
        assert [chat(key, "hello", user="cust-7").status_code for _ in range(3)] == [200] * 3
        # a fresh account of the campaign: its first request carries the campaign's prompts
        store.upsert_account("recruit", signup_channel="education", email_domain="mail-hub.io", verified=False)
        fresh = issue_key(store, "recruit").key
        first = chat(fresh, scenes.REPERTOIRE[0], scenes.HYDRA_SYSTEM)
        assert first.status_code == 403, first.text
        assert "first request" in first.json()["error"]["message"]
        store.upsert_account("newcomer", signup_channel="self_serve", email_domain="corp.example", verified=True)
        assert chat(issue_key(store, "newcomer").key, "What should I cook tonight with leeks?").status_code == 200
    finally:
        srv.stop()


def test_a_fleet_verdicts_table_made_before_end_users_apart_gains_the_column(tmp_path: Path) -> None:
    import sqlalchemy as sa

    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    with store.engine.begin() as con:
        con.exec_driver_sql("CREATE TABLE dg_fleet_verdicts (account_id VARCHAR(200) PRIMARY KEY, action VARCHAR(32) "
                            "NOT NULL, campaign_id VARCHAR(200), reasons TEXT, score FLOAT, version BIGINT NOT NULL, "
                            "updated_us BIGINT NOT NULL)")
        con.exec_driver_sql("INSERT INTO dg_fleet_verdicts VALUES ('a', 'throttle', NULL, NULL, 0.9, 1, 0)")
    tables = VerdictTables(store)
    assert "end_users_apart" in {c["name"] for c in sa.inspect(store.engine).get_columns("dg_fleet_verdicts")}
    tables.publish([{"account_id": "b", "action": "throttle", "campaign_id": None, "reasons": None, "score": 0.9,
                     "end_users_apart": True}], 2)
    assert {r["account_id"]: r["end_users_apart"] for r in tables.since(0)} == {"a": None, "b": True}
    VerdictTables(store)  # opened again: nothing left to add


def _folded_carrier_scene(tmp_path: Path) -> DetectorService:
    """A detector service on SQLite that has folded the carrier scene, its clock at the end."""
    store = Store(f"sqlite:///{tmp_path / 'fleet.db'}")
    rows, accounts = carrier_scene()
    for a in accounts:
        created = a.pop("created_at")
        store.upsert_account(a.pop("account_id"), created_us=int(created.timestamp() * 1e6), **a)
    store.insert_events(rows)
    end_us = rows[-1]["ts_us"] + 1
    svc = DetectorService(store, detect_config_file(tmp_path, short_throttle=False), interval=0.05,
                          checkpoint_interval=3600, clock=lambda: end_us)
    svc.fold()
    return svc


def test_published_verdicts_of_a_carrier_judged_apart_are_the_full_tables_rows(tmp_path: Path) -> None:
    """A carrier whose flag applies to its flagged end users only is published with
    `end_users_apart` and the reason saying so, exactly as the whole verdicts table has it."""
    svc = _folded_carrier_scene(tmp_path)
    got = svc.changed()
    assert got == svc.changed_in_table()
    carrier = next(r for r in got if r["account_id"] == "carrier")
    assert carrier["end_users_apart"] is True and "end_user_verdicts" in carrier["reasons"]


def test_a_step_builds_the_end_users_table_once(tmp_path: Path, monkeypatch: Any) -> None:
    """The end users' verdicts decide which carriers are judged apart and are published too:
    one step builds them once."""
    from distillguard.detect import _endusers

    svc = _folded_carrier_scene(tmp_path)
    built = []
    end_user_table = _endusers.end_user_table

    def counted(verdicts: Any) -> Any:
        built.append(verdicts.num_rows)
        return end_user_table(verdicts)

    monkeypatch.setattr(_endusers, "end_user_table", counted)
    svc.step()
    assert len(built) == 1
    assert svc.published_end_users, "the scene must judge end users apart"
