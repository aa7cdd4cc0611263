"""The Spark engine (local mode) gives the embedded engine's verdicts on a date-partitioned log."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard.detect import scan
from distillguard.traffic import write_table

from . import scenes
from .builders import account_table, event_table


def _partitioned_log(path: Path) -> None:
    parts = [scenes.hydra(n_accounts=8, n_events=120), scenes.classroom(8), scenes.enterprise()]
    events = event_table([r for p in parts for r in p[0]])
    days = pc.strftime(events.column("ts"), format="%Y-%m-%d")
    for day in sorted(set(days.to_pylist())):
        folder = path / "events" / f"date={day}"
        folder.mkdir(parents=True)
        pq.write_table(events.filter(pc.equal(days, pa.scalar(day))), folder / "part-0.parquet")
    write_table(path, "accounts", account_table([a for p in parts for a in p[1]]))


def test_spark_and_embedded_engines_agree(tmp_path: Path) -> None:
    _partitioned_log(tmp_path / "log")
    embedded = scan(tmp_path / "log", tmp_path / "duck")
    spark = scan(tmp_path / "log", tmp_path / "spark", engine="spark")
    assert embedded.verdicts.num_rows == 8 + 8 + 1
    assert "block" in embedded.verdicts.column("action").to_pylist()
    assert spark.verdicts.equals(embedded.verdicts)
    assert spark.campaigns.equals(embedded.campaigns)
