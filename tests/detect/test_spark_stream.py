"""The streaming prototype: parts read as a stream give the batch scan's verdicts; events that
arrive out of order within the lateness are replayed in their own windows, later ones are
counted and still folded."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.detect import get_detector, load_config, scan
from distillguard.detect._spark_stream import WindowReplay
from distillguard.detect._stream import compute_signals
from distillguard.traffic import write_table

from . import scenes
from .builders import account_table, event_table

PARTS = 4


def _parted_log(path: Path) -> None:
    """The scenes' events in PARTS Parquet parts, split by time, modified in time order."""
    parts = [scenes.hydra(n_accounts=8, n_events=120), scenes.classroom(8), scenes.enterprise()]
    events = event_table([r for p in parts for r in p[0]]).sort_by("ts")
    (path / "events").mkdir(parents=True)
    size = -(-events.num_rows // PARTS)
    for i in range(PARTS):
        part = path / "events" / f"part-{i}.parquet"
        pq.write_table(events.slice(i * size, size), part)
        os.utime(part, (1_700_000_000 + i, 1_700_000_000 + i))  # the file source's order
    write_table(path, "accounts", account_table([a for p in parts for a in p[1]]))


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """A parted log and the embedded scan's verdicts on it."""
    root = tmp_path_factory.mktemp("stream")
    _parted_log(root / "log")
    embedded = scan(root / "log", root / "duck")
    assert "block" in embedded.verdicts.column("action").to_pylist()
    return root / "log", embedded.verdicts


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
    sig = compute_signals(path)
    order, behind = _swapped(sig, 6)
    assert behind > 0
    replay = WindowReplay(path, load_config(None), lateness_us=behind + 1)
    for s in order:
        replay.add(s.sample(fraction=1.0, shuffle=True, seed=1))  # no order within a micro-batch either
    assert replay.closed_until is not None, "windows were replayed before the end"
    assert replay.late == 0
    assert replay.finish().verdicts.equals(expected)


def test_an_event_later_than_the_lateness_is_counted_and_still_folded(log: tuple[Path, pa.Table]) -> None:
    path, _ = log
    sig = compute_signals(path)
    order, behind = _swapped(sig, 6)
    replay = WindowReplay(path, load_config(None), lateness_us=0)
    for s in order:
        replay.add(s)
    replay.finish()
    assert replay.late > 0
    assert replay.det.state.events_seen == sig.height  # nothing dropped


def test_spark_streaming_gives_the_batch_scans_verdicts(log: tuple[Path, pa.Table]) -> None:
    pytest.importorskip("pyspark")
    from distillguard.detect._spark_stream import graph_detector_spark_stream, spark_stream

    path, expected = log
    result, replay = spark_stream(path, files_per_batch=1)
    assert replay.batches >= PARTS  # one micro-batch per part
    assert replay.late == 0
    assert result.verdicts.equals(expected)
    assert get_detector("graph", "spark-streaming") is graph_detector_spark_stream  # `scan --engine`
