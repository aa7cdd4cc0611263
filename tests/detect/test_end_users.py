"""End users inside an account judged apart (`detect/_endusers`): a reseller carrying a campaign
through a few of its declared customers, and a campaign that rotates end-user ids."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from distillguard.detect import scan
from distillguard.detect._endusers import OVERFLOW, SEP, EndUserBook, split_principal
from distillguard.traffic import read_table, write_table

from . import scenes
from .builders import account_table, event_table

FLAGGED = ("throttle", "block")


def _scan(tmp: Path, rows: list[dict[str, object]], accts: list[dict[str, object]]) -> tuple[pa.Table, pa.Table | None]:
    write_table(tmp / "log", "events", event_table(rows))
    write_table(tmp / "log", "accounts", account_table(accts))
    result = scan(tmp / "log", tmp / "out")
    return result.verdicts, result.tables.get("end_user_verdicts")


def _actions(t: pa.Table, *keys: str) -> dict[object, str]:
    cols = [t.column(k).to_pylist() for k in (*keys, "action")]
    return {(row[0] if len(keys) == 1 else tuple(row[:-1])): row[-1] for row in zip(*cols, strict=True)}


def test_a_carried_campaign_is_found_among_the_resellers_end_users(tmp_path: Path) -> None:
    verdicts, users = _scan(tmp_path, *scenes.carrier())
    assert users is not None
    assert (tmp_path / "out" / "end_user_verdicts.parquet").is_file()
    judged = _actions(users, "account_id", "end_user")
    assert {judged[("carrier", "op-0")], judged[("carrier", "op-1")]} <= set(FLAGGED)
    benign = [a for (acct, eu), a in judged.items() if eu.startswith("cust-")]
    assert len(benign) == 40 and not set(benign) & set(FLAGGED)
    acct = _actions(verdicts, "account_id")
    assert acct["carrier"] != "block"
    apart = dict(zip(verdicts.column("account_id").to_pylist(),
                     verdicts.column("end_users_apart").to_pylist(), strict=True))
    assert apart["carrier"] is True and not any(v for k, v in apart.items() if k != "carrier")
    # the written table reads back in the format's schema
    assert read_table(tmp_path / "out", "end_user_verdicts").num_rows == users.num_rows


def test_rotating_end_user_ids_never_dilute_an_accounts_own_evidence(tmp_path: Path) -> None:
    rows, accts = scenes.hydra()
    plain, _ = _scan(tmp_path / "plain", [dict(r) for r in rows], accts)
    for k, r in enumerate(rows):
        r["end_user"] = f"u{k}"  # a fresh id on every request
    rotated, users = _scan(tmp_path / "rotated", rows, accts)
    assert users is not None and users.num_rows > 0
    assert _actions(rotated, "account_id") == _actions(plain, "account_id")
    assert set(_actions(rotated, "account_id").values()) <= set(FLAGGED)
    assert not any(rotated.column("end_users_apart").to_pylist())


def test_a_log_without_end_users_writes_no_end_user_verdicts(tmp_path: Path) -> None:
    rows, accts = scenes.hydra(n_accounts=6, n_events=40)
    _, users = _scan(tmp_path, rows, accts)
    assert users is None
    assert not (tmp_path / "out" / "end_user_verdicts.parquet").exists()


def test_end_users_judged_apart_are_bounded_per_account_and_in_all() -> None:
    book = EndUserBook(max_per_account=2, max_total=3)
    pairs = pl.DataFrame({"account_id": ["a", "a", "a", "b", "b", "a"],
                          "end_user": ["x", "y", "z", "p", "q", "x"]})
    assert book.admit(pairs).to_list() == ["x", "y", OVERFLOW, "p", OVERFLOW, "x"]
    assert len(book.apart) == 3


def test_a_principal_splits_at_the_first_separator_after_the_account() -> None:
    assert split_principal("acct") == ("acct", None)
    assert split_principal(f"acct{SEP}evil{SEP}user") == ("acct", f"evil{SEP}user")


def test_the_gateways_detector_judges_end_users_as_the_scan_does() -> None:
    """`EndUserDetector` fed in batches: the carrier's operator end users flagged, its
    customers not, the account narrowed to them (`end_users_apart`), the hydra blocked."""
    import numpy as np

    from distillguard.detect import EndUserDetector

    rows, accts = scenes.carrier()
    rows = sorted(rows, key=lambda r: r["ts"])  # type: ignore[arg-type,return-value]
    det = EndUserDetector(accounts=account_table(accts))
    for chunk in np.array_split(np.arange(len(rows)), 6):
        det.update(event_table([rows[i] for i in chunk]))
    users = _actions(det.end_user_verdicts(), "account_id", "end_user")
    assert {users[("carrier", "op-0")], users[("carrier", "op-1")]} <= set(FLAGGED)
    assert not {a for (_, eu), a in users.items() if eu.startswith("cust-")} & set(FLAGGED)
    verdicts = det.verdicts()
    apart = dict(zip(verdicts.column("account_id").to_pylist(),
                     verdicts.column("end_users_apart").to_pylist(), strict=True))
    assert apart["carrier"] is True
    assert _actions(verdicts, "account_id")["h0"] == "block"


def _second_replay(log_dir: Path) -> pa.Table:
    """End users' verdicts as a replay of their own computes them: the whole log read again,
    its signals re-keyed by end user, replayed alone (the reference `SubPrincipals` folds
    into the account replay)."""
    from distillguard.detect._communities import refine_campaigns
    from distillguard.detect._config import load_config
    from distillguard.detect._endusers import end_user_table, sub_principal_signals
    from distillguard.detect._output import verdict_table
    from distillguard.detect._replay import replay
    from distillguard.detect._signatures import event_signals
    from distillguard.detect._stream import SIGNAL_COLUMNS
    from distillguard.traffic import TrafficLog

    cfg = load_config(None)
    book = EndUserBook(cfg.end_users.max_per_account, cfg.end_users.max_total)
    parts = []
    for batch in TrafficLog(log_dir).batches("events", columns=[*SIGNAL_COLUMNS, "end_user"], batch_size=200_000):
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        assert isinstance(frame, pl.DataFrame)
        parts.append(sub_principal_signals(event_signals(frame.drop("end_user")), frame["end_user"].replace("", None), book))
    det, first_flag = replay(log_dir, cfg, pl.concat(parts).sort("ts_us", "event_id"))
    a = refine_campaigns(det.assess(), cfg.links.min_accounts)
    return end_user_table(verdict_table(det.state, a, cfg, first_flag))


def test_the_end_users_judged_in_the_account_replay_are_those_a_replay_of_their_own_judges(tmp_path: Path) -> None:
    """On a simulated log of resellers that name their customers (`tune_reseller_end_users`,
    scaled down) and on the carrier scene, the scan's end users' verdicts, judged beside the
    accounts in one replay, are those of a separate second replay, row for row."""
    from distillguard.simulate import simulate

    scenario = Path(__file__).parents[2] / "scenarios" / "tune_reseller_end_users.toml"
    simulate(tmp_path / "sim" / "log", seed=21, scenario=scenario, events=8000)
    rows, accts = scenes.carrier()
    write_table(tmp_path / "carrier" / "log", "events", event_table(rows))
    write_table(tmp_path / "carrier" / "log", "accounts", account_table(accts))
    actions = {}
    for name in ("sim", "carrier"):
        users = scan(tmp_path / name / "log", tmp_path / name / "out").tables.get("end_user_verdicts")
        assert users is not None
        assert users.equals(_second_replay(tmp_path / name / "log")), name
        actions[name] = set(users.column("action").to_pylist())
    assert actions["sim"] - {"allow"} and actions["carrier"] & set(FLAGGED), actions


def test_precomputed_signals_get_their_end_users_from_the_log(tmp_path: Path) -> None:
    """Signals computed apart (as `--engine spark` hands them over, without `end_user`): the
    replay reads the end users by event id and judges them as the streamed scan does."""
    from distillguard.detect._config import load_config
    from distillguard.detect._endusers import SubPrincipals
    from distillguard.detect._replay import replay
    from distillguard.detect._stream import compute_signals

    rows, accts = scenes.carrier()
    write_table(tmp_path / "log", "events", event_table(rows))
    write_table(tmp_path / "log", "accounts", account_table(accts))
    streamed = scan(tmp_path / "log", tmp_path / "out").tables["end_user_verdicts"]
    cfg = load_config(None)
    sub = SubPrincipals.of_log(tmp_path / "log", cfg, {}, set())
    assert sub is not None
    signals = compute_signals(tmp_path / "log")
    assert "end_user" not in signals.columns
    replay(tmp_path / "log", cfg, signals, sub=sub)
    table, _ = sub.judge(cfg, set())
    assert table.equals(streamed)
    assert _actions(table, "account_id", "end_user")[("carrier", "op-0")] in FLAGGED
