"""The fleet's detector service: follows the shared capture, checkpoints and resumes, one leads.

Runs on SQLite and on the real PostgreSQL (own table prefix, dropped afterwards), on a small
simulated log written into the capture tables as replicas would have written it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillguard.enforce import Policy
from distillguard.gateway import DetectorService, Store, VerdictFollower, VerdictTables
from distillguard.gateway._detector import SCORE_REPUBLISH_DELTA
from distillguard.traffic import TrafficLog

SEED = 11
EVENTS = 12_000  # simulated; enough for the default scenario's campaigns to be flagged
PARTS = 4  # the capture is followed in this many steps


@pytest.fixture(scope="module")
def log_rows(tmp_path_factory: pytest.TempPathFactory, corpora_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events (store rows, capture order) and accounts of a small simulated log."""
    from distillguard.simulate import simulate

    out = tmp_path_factory.mktemp("sim") / "log"
    simulate(out, seed=SEED, events=EVENTS, corpora=corpora_dir)
    log = TrafficLog(out)
    events = log.read("events").sort_by("ts").to_pylist()
    rows = []
    for e in events:
        ts = e.pop("ts")
        e.pop("end_user", None)
        e.pop("batch_id", None)
        rows.append({**e, "ts_us": int(ts.timestamp() * 1_000_000)})
    accounts = log.read("accounts").to_pylist()
    return rows, accounts


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'fleet.db'}")
        return
    url = request.getfixturevalue("postgres_url")
    s = Store(url, f"t{uuid.uuid4().hex[:10]}_")
    yield s
    VerdictTables(s).drop_all()
    s.drop_all()


def fill(store: Store, rows: list[dict[str, Any]], accounts: list[dict[str, Any]]) -> None:
    for a in accounts:
        created = a.pop("created_at")
        store.upsert_account(a.pop("account_id"), created_us=int(created.timestamp() * 1e6), **a)
    store.insert_events(rows)


def service(store: Store, end_us: int) -> DetectorService:
    # the log's own clock, so that every run measures rates at the same "now"
    return DetectorService(store, interval=0.05, checkpoint_interval=3600, clock=lambda: end_us)


def actions(svc: DetectorService) -> dict[str, str]:
    return {r["account_id"]: r["action"] for r in svc.detector.verdicts().select(["account_id", "action"]).to_pylist()}


def test_a_restarted_detector_resumes_from_its_checkpoint(store: Store, log_rows: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """Fed in parts, checkpointed and restored half-way, the detector ends where a detector fed
    everything in one go ends: same verdicts for every account; the restored one never re-reads
    the events before its checkpoint."""
    rows, accounts = log_rows
    end_us = rows[-1]["ts_us"] + 1
    fill(store, [], [dict(a) for a in accounts])
    size = len(rows) // PARTS + 1
    first = service(store, end_us)
    first.restore()
    for i in range(PARTS):
        store.insert_events(rows[i * size : (i + 1) * size])
        first.step()  # sees the capture's top; reads up to it at the next step
        first.step()
        if i == PARTS // 2 - 1:
            first.checkpoint()
            at = first.cursor
            second = service(store, end_us)
            second.restore()
            assert second.restored_from == at and second.events_seen == first.events_seen
            first = second
    first.step()
    assert first.events_seen == len(rows)
    whole = service(Store(store.url, store.prefix), end_us)
    whole.name = "whole"  # its own checkpoint row
    whole.restore()
    # running before the traffic came, like `first`: its first decision (on nothing) is not
    # a one-shot scan's, which blocks without waiting for a throttle to hold
    whole.detector.verdicts()
    whole.step()
    whole.step()
    assert whole.events_seen == len(rows)
    got, want = actions(first), actions(whole)
    assert got == want
    assert {"throttle", "block"} & set(want.values()), "the log must have flagged accounts"
    # what was published is what the detector says now
    published = {r["account_id"]: r["action"] for r in VerdictTables(store).since(0)}
    assert published == {a: x for a, x in got.items() if a in published}
    assert {a for a, x in got.items() if x != "allow"} <= set(published)


def test_one_detector_leads_and_a_standby_takes_over(store: Store, log_rows: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """Two services on one database: one leads; when it stops, the other leads, resumes from
    its checkpoint (continuing the versions) and a follower applies both leaders' verdicts."""
    rows, accounts = log_rows
    end_us = rows[-1]["ts_us"] + 1
    fill(store, rows[: len(rows) // 2], [dict(a) for a in accounts])
    a, b = service(store, end_us), service(store, end_us)
    stop_a, stop_b = threading.Event(), threading.Event()
    ta = threading.Thread(target=a.run, args=(stop_a,), daemon=True)
    ta.start()
    deadline = time.monotonic() + 30
    while not (a.leading and a.events_seen == len(rows) // 2):
        assert time.monotonic() < deadline, "the first detector did not catch up"
        time.sleep(0.05)
    tb = threading.Thread(target=b.run, args=(stop_b,), daemon=True)
    tb.start()
    time.sleep(0.5)
    assert not b.leading, "two detectors lead at once"
    version_a = a.version
    stop_a.set()
    ta.join(30)  # a clean stop checkpoints
    store.insert_events(rows[len(rows) // 2 :])
    deadline = time.monotonic() + 60
    while not (b.leading and b.events_seen == len(rows)):
        assert time.monotonic() < deadline, f"the standby did not take over: leading={b.leading} seen={b.events_seen}"
        time.sleep(0.05)
    stop_b.set()
    tb.join(30)
    assert b.restored_from == a.cursor  # the leader's checkpoint at its clean stop, not zero
    assert b.version >= version_a
    follower = VerdictFollower(VerdictTables(store), Policy())
    follower.poll()
    flagged = {acc for acc, act in actions(b).items() if act in ("throttle", "block")}
    assert flagged and all(follower.policy.decide(acc).action in ("throttle", "block") for acc in flagged)


def test_the_detector_weighs_the_release_times_it_is_given(tmp_path: Path) -> None:
    """The capture holds no model release times: a service given the models table knows them
    (and keeps them through its checkpoint); one without knows none."""
    import pyarrow as pa

    released = pa.table({"model": ["m-new"], "released_at": pa.array([1_770_000_000_000_000], pa.timestamp("us", "UTC"))})
    s = Store(f"sqlite:///{tmp_path / 'models.db'}")
    given = DetectorService(s, models=released, checkpoint_interval=3600)
    assert given.detector.main.state.releases == {"m-new": 1_770_000_000_000_000}
    given.checkpoint()
    again = DetectorService(s)  # the checkpoint brings them back
    again.restore()
    assert again.detector.main.state.releases == {"m-new": 1_770_000_000_000_000}
    assert DetectorService(Store(f"sqlite:///{tmp_path / 'bare.db'}")).detector.main.state.releases == {}


def test_models_written_through_the_admin_api_reach_the_detector_and_the_export(store: Store, tmp_path: Path) -> None:
    """`PUT /admin/models` replaces the store's models table: a running detector takes the
    release times at its next step (and a restarted one at start), a replacement drops the
    models left out, a request without the admin token changes nothing, and the export writes
    the table in the format."""
    import httpx

    from distillguard.gateway import (
        FakeUpstream,
        Gateway,
        GatewayConfig,
        Router,
        create_app,
        export_log,
    )
    from distillguard.gateway._export import model_rows

    from .support import ADMIN, ServerThread, free_port

    new_us, other_us = 1_770_000_000_000_000, 1_780_000_000_000_000
    svc = DetectorService(store, checkpoint_interval=3600)
    svc.restore()
    assert svc.detector.main.state.releases == {}
    cfg = GatewayConfig(db=store.url, table_prefix=store.prefix, admin_token=ADMIN, detect=False)
    router = Router()
    router.add("*", FakeUpstream())
    gw = Gateway(cfg, router=router)
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    base = f"http://127.0.0.1:{srv.server.config.port}/admin/models"
    admin = {"authorization": f"Bearer {ADMIN}"}
    try:
        put = httpx.put(base, headers=admin, json=[{"model": "m-new", "released_at": "2026-02-02T02:40:00Z"},
                                                    {"model": "m-unknown", "released_at": None}])
        assert put.status_code == 200 and put.json() == {"models": 2}
        assert httpx.get(base, headers=admin).json() == [
            {"model": "m-new", "released_at": "2026-02-02T02:40:00+00:00"}, {"model": "m-unknown", "released_at": None}]
        svc.step()
        assert svc.detector.main.state.releases == {"m-new": new_us}
        restarted = DetectorService(store, checkpoint_interval=3600)
        restarted.restore()
        assert restarted.detector.main.state.releases == {"m-new": new_us}
        refused = httpx.put(base, json=[{"model": "m-intruder", "released_at": "2026-01-01T00:00:00Z"}])
        assert refused.status_code == 401
        svc.step()
        assert svc.detector.main.state.releases == {"m-new": new_us}
        assert httpx.put(base, headers=admin, json=[{"model": "m-other", "released_at": "2026-05-28T20:26:40"}]).status_code == 200
        svc.step()
        assert svc.detector.main.state.releases == {"m-other": other_us}
    finally:
        srv.stop()
        gw.ledger.drop_all()  # the gateway's batch tables (the fixture drops the rest)
    out = export_log(store, tmp_path / "export")
    assert out.models == 1
    models = TrafficLog(tmp_path / "export").read("models").to_pylist()
    assert [(m["model"], int(m["released_at"].timestamp() * 1_000_000)) for m in models] == [("m-other", other_us)]
    # what `serve --models DIR` writes from such a folder
    assert model_rows(TrafficLog(tmp_path / "export").read("models")) == [("m-other", other_us)]


@pytest.mark.parametrize("freeze", [True, False])
def test_a_service_process_keeps_its_warm_heap_out_of_full_collections(tmp_path: Path, freeze: bool) -> None:
    """`freeze_heap` (set by `distillguard detector`, a gateway's child included): once warm,
    the objects alive then leave the garbage collector's generations, so full collections
    during its steps never walk them; a service in someone else's process leaves them."""
    import gc

    svc = DetectorService(Store(f"sqlite:///{tmp_path / 'gc.db'}"), interval=0.05)
    svc.freeze_heap = freeze
    stop = threading.Event()
    svc.warm = stop.set  # type: ignore[method-assign]  # warm, then stop before leading
    gc.unfreeze()
    try:
        svc.run(stop)
        assert (gc.get_freeze_count() > 0) is freeze
    finally:
        gc.unfreeze()


def _cheap(r: dict[str, Any] | tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """A verdict's compared columns (action, campaign, end_users_apart) and its score, from a
    row or a `published` value."""
    if r is None:
        return None
    if isinstance(r, dict):
        return (r["action"], r["campaign_id"], r["end_users_apart"], r["score"])
    action, campaign, _reasons, score, apart = r
    return (action, campaign, apart, score)


def _republished(r: dict[str, Any], published: tuple[Any, ...] | None) -> bool:
    """Whether a verdict row differs from its published value as `changed` tells them apart."""
    now, then = _cheap(r), _cheap(published)
    return then is None or now[:3] != then[:3] or not abs(now[3] - then[3]) < SCORE_REPUBLISH_DELTA


def test_published_verdicts_are_the_full_tables_rows(tmp_path: Path, log_rows: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """At every step, what is published is exactly the rows of the whole verdicts table (reasons
    byte for byte) of the accounts whose action, campaign or `end_users_apart` changed, whose
    score moved by SCORE_REPUBLISH_DELTA or more, or that are new; and then every account's
    published verdict agrees with the table."""
    rows, accounts = log_rows
    store = Store(f"sqlite:///{tmp_path / 'fleet.db'}")
    fill(store, [], [dict(a) for a in accounts])
    svc = service(store, rows[-1]["ts_us"] + 1)
    svc.restore()
    size = len(rows) // PARTS + 1
    published_some = 0
    for i in range(PARTS):
        store.insert_events(rows[i * size : (i + 1) * size])
        svc.fold()
        table = svc.changed_in_table()  # differs in any column, reasons included
        want = [r for r in table if _republished(r, svc.published.get(r["account_id"]))]
        got = svc.changed()
        assert got == want
        published_some += len(got)
        svc.mark_published(got)
        full = svc.detector.verdicts().to_pylist()
        assert {r["account_id"] for r in full} == set(svc.published)
        assert not [r for r in full if _republished(r, svc.published[r["account_id"]])]
    assert published_some > len(accounts) // 2
    assert any(r["reasons"] not in (None, "[]") for r in got), "the log must give reasons"


def test_a_step_builds_reasons_only_for_the_verdicts_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_rows: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """Once the log is folded in, a step with nothing new builds no account's reasons, and one
    with a few new events of one account builds at most the reasons of those that changed."""
    from distillguard.detect import _output

    rows, accounts = log_rows
    store = Store(f"sqlite:///{tmp_path / 'fleet.db'}")
    fill(store, rows[:-20], [dict(a) for a in accounts])
    svc = service(store, rows[-1]["ts_us"] + 1)
    svc.restore()
    first = svc.step() + svc.step()
    assert first > 0
    built = []
    profile_reasons = _output.profile_reasons

    def counted(*args: Any) -> list[str]:
        built.append(args[-1])
        return profile_reasons(*args)

    monkeypatch.setattr(_output, "profile_reasons", counted)
    assert svc.step() == 0
    assert built == []
    store.insert_events(rows[-20:])
    changed = svc.step() + svc.step()
    assert len(built) <= changed < len(accounts) // 4


def _requests(n: int, t0_us: int, accounts: range) -> list[dict[str, Any]]:
    """`n` identical scripted requests, 200 us apart from `t0_us`, spread over `accounts`."""
    return [{"event_id": uuid.uuid4().hex, "ts_us": t0_us + i * 200, "account_id": f"acct-{accounts[i % len(accounts)]}",
             "key_id": "key", "ip": "127.0.0.1", "user_agent": "wrk", "endpoint": "chat.completions",
             "model": "m", "prompt": "Say hello to the benchmark.", "turns": 1, "tools": 0,
             "response": "Hello.", "prompt_tokens": 7, "completion_tokens": 2, "status": 200, "latency_ms": 1.0}
            for i in range(n)]


def test_scores_drifting_with_the_clock_alone_are_not_republished(tmp_path: Path) -> None:
    """Rates are measured up to now, so a busy account's score drifts a little at every step
    once it is older than a day: each step republishes the accounts that sent requests in it,
    not every account that ever did."""
    day_us = 86_400_000_000
    store = Store(f"sqlite:///{tmp_path / 'fleet.db'}")
    t0 = time.time_ns() // 1000 - 3 * day_us
    now = [t0 + 2 * day_us]
    svc = DetectorService(store, clock=lambda: now[0])
    svc.restore()
    store.insert_events(_requests(1200, t0, range(200)))  # 6 requests each: below the volume floor
    svc.fold()
    svc.mark_published(svc.changed())
    for step in range(4):
        active = range(100 + 20 * step, 120 + 20 * step)
        store.insert_events(_requests(900, now[0], active))
        now[0] += 2_000_000
        svc.fold()
        rows = svc.changed()
        assert {r["account_id"] for r in rows} == {f"acct-{a}" for a in active}
        svc.mark_published(rows)


def test_verdicts_published_with_other_columns_are_published_again(tmp_path: Path) -> None:
    """A checkpoint of a version that published fewer columns: its accounts are published again
    with every column, the others not."""
    store = Store(f"sqlite:///{tmp_path / 'fleet.db'}")
    t0 = time.time_ns() // 1000 - 10**9
    svc = DetectorService(store, clock=lambda: t0 + 10**6)
    svc.restore()
    store.insert_events(_requests(60, t0, range(3)))
    svc.fold()
    svc.mark_published(svc.changed())
    svc.published = {a: v if a != "acct-1" else v[:-1] for a, v in svc.published.items()}
    assert [r["account_id"] for r in svc.changed()] == ["acct-1"]
