"""The streaming prototype: parts read as a stream give the batch scan's verdicts and end users'
verdicts; events that arrive out of order within the lateness are replayed in their own
windows, later ones are counted and still folded; a query that crashes mid-stream and is
started again on its checkpoint ends with the verdicts of an uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.detect import get_detector, load_config, scan
from distillguard.detect._replay import with_end_users
from distillguard.detect._spark_stream import STATE_DIR, WindowReplay
from distillguard.detect._stream import compute_signals
from distillguard.traffic import write_table

from . import scenes
from .builders import account_table, event_table

PARTS = 4


def _parted_log(path: Path) -> None:
    """The scenes' events in PARTS Parquet parts, split by time, modified in time order: a
    hydra, a reseller carrying it for two of the end users it declares, hard negatives."""
    parts = [scenes.carrier(), scenes.classroom(8), scenes.enterprise()]
    events = event_table([r for p in parts for r in p[0]]).sort_by("ts")
    (path / "events").mkdir(parents=True)
    size = -(-events.num_rows // PARTS)
    for i in range(PARTS):
        part = path / "events" / f"part-{i}.parquet"
        pq.write_table(events.slice(i * size, size), part)
        os.utime(part, (1_700_000_000 + i, 1_700_000_000 + i))  # the file source's order
    write_table(path, "accounts", account_table([a for p in parts for a in p[1]]))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, pa.Table]:
    """A parted log, and the embedded scan's verdicts and end users' verdicts on it."""
    root = tmp_path_factory.mktemp("stream")
    _parted_log(root / "log")
    embedded = scan(root / "log", root / "duck")
    assert "block" in embedded.verdicts.column("action").to_pylist()
    users = embedded.tables["end_user_verdicts"]
    flagged = {(a, u) for a, u, act in zip(*(users.column(c).to_pylist() for c in ("account_id", "end_user", "action")),
                                           strict=True) if act in ("throttle", "block")}
    assert {("carrier", "op-0"), ("carrier", "op-1")} <= flagged
    return root / "log", embedded.verdicts, users


@pytest.fixture(scope="module")
def log(scanned: tuple[Path, pa.Table, pa.Table]) -> tuple[Path, pa.Table]:
    return scanned[0], scanned[1]


def _swapped(sig: pl.DataFrame, n: int) -> tuple[list[pl.DataFrame], int]:
    """Time-ordered signals in n slices, each odd slice delivered before the even one before
    it; and the most any event then arrives behind the newest already delivered (us)."""
    size = -(-sig.height // n)
    slices = [sig.slice(i * size, size) for i in range(n)]
    order = [s for i in range(0, n, 2) for s in slices[i : i + 2][::-1]]
    newest, behind = None, 0
    for s in order:
        if newest is not None:
            behind = max(behind, newest - int(s["ts_us"].min()))  # type: ignore[arg-type]
        newest = max(newest or 0, int(s["ts_us"].max()))  # type: ignore[arg-type]
    return order, behind


def test_events_out_of_order_within_the_lateness_give_the_scans_verdicts(log: tuple[Path, pa.Table]) -> None:
    path, expected = log
    sig = with_end_users(path, compute_signals(path))
    order, behind = _swapped(sig, 6)
    assert behind > 0
    replay = WindowReplay(path, load_config(None), lateness_us=behind + 1, end_users=True)
    for s in order:
        replay.add(s.sample(fraction=1.0, shuffle=True, seed=1))  # no order within a micro-batch either
    assert replay.closed_until is not None, "windows were replayed before the end"
    assert replay.late == 0
    assert replay.finish().verdicts.equals(expected)


def test_an_event_later_than_the_lateness_is_counted_and_still_folded(log: tuple[Path, pa.Table]) -> None:
    path, _ = log
    sig = with_end_users(path, compute_signals(path))
    order, behind = _swapped(sig, 6)
    replay = WindowReplay(path, load_config(None), lateness_us=0, end_users=True)
    for s in order:
        replay.add(s)
    replay.finish()
    assert replay.late > 0
    assert replay.det.state.events_seen == sig.height  # nothing dropped
    assert replay.sub is not None and replay.sub.det.state.events_seen == sig.height


def test_spark_streaming_gives_the_batch_scans_verdicts(scanned: tuple[Path, pa.Table, pa.Table],
                                                       tmp_path: Path) -> None:
    from distillguard.detect._spark_stream import graph_detector_spark_stream, spark_stream

    path, expected, users = scanned
    result, replay = spark_stream(path, master="local[1]", files_per_batch=1, checkpoint=tmp_path / "cp")
    assert replay.batches >= PARTS  # one micro-batch per part
    assert replay.late == 0 and replay.skipped == 0
    assert result.verdicts.equals(expected)
    assert result.tables["end_user_verdicts"].equals(users)
    assert get_detector("graph", "spark-streaming") is graph_detector_spark_stream  # `scan --engine`
    # `scan --checkpoint` on the finished query's folder: nothing left to read, the same tables
    again = scan(path, tmp_path / "out", engine="spark-streaming", checkpoint=tmp_path / "cp")
    assert again.verdicts.equals(expected)
    assert again.tables["end_user_verdicts"].equals(users)


def test_a_checkpoint_is_refused_by_an_engine_that_takes_none(log: tuple[Path, pa.Table], tmp_path: Path) -> None:
    from distillguard._errors import ConfigError

    with pytest.raises(ConfigError, match="checkpoint is for the spark-streaming engine"):
        scan(log[0], tmp_path / "out", checkpoint=tmp_path / "cp")


class Crash(Exception):
    """Raised inside `foreachBatch`: the query fails as a driver that died there would."""


@pytest.mark.parametrize("saved", [False, True], ids=["before-the-state-is-saved", "before-spark-commits"])
def test_a_query_started_again_on_its_checkpoint_resumes_where_it_crashed(
        scanned: tuple[Path, pa.Table, pa.Table], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        saved: bool) -> None:
    """A crash in the second micro-batch, before the replay saved its state (Spark runs the
    batch again and it is applied) or after (Spark runs it again and it is skipped): the query
    started again on the checkpoint ends with the verdicts of an uninterrupted run, every event
    counted once."""
    from distillguard.detect._spark_stream import spark_stream

    path, expected, users = scanned
    checkpoint = tmp_path / "cp"
    real_save = WindowReplay.save

    def crashing_save(self: WindowReplay, folder: Path) -> Path:
        if self.batch_id == 1 and not saved:
            raise Crash("the driver died before saving")
        out = real_save(self, folder)
        if self.batch_id == 1:
            raise Crash("the driver died before Spark committed the batch")
        return out

    monkeypatch.setattr(WindowReplay, "save", crashing_save)
    with pytest.raises(Exception, match="the driver died"):
        spark_stream(path, master="local[1]", files_per_batch=1, checkpoint=checkpoint)
    assert sorted(p.name for p in (checkpoint / STATE_DIR).glob("*.state")) == (["1.state"] if saved else ["0.state"])
    monkeypatch.setattr(WindowReplay, "save", real_save)

    result, replay = spark_stream(path, master="local[1]", files_per_batch=1, checkpoint=checkpoint)
    assert replay.skipped == (1 if saved else 0)  # Spark ran the batch it had not committed again
    events = pq.read_table(path / "events").num_rows
    assert replay.det.state.events_seen == events  # none counted twice, none lost
    assert result.verdicts.equals(expected)
    assert result.tables["end_user_verdicts"].equals(users)
