"""`distillguard scan` and `distillguard evaluate` through the CLI, and the HTML report."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from distillguard.traffic import read_table, write_table

T0 = datetime(2026, 2, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two loud hydra accounts (300 requests a day), two quiet ones, three benign ones
    (one of them an enterprise batch job as loud as the hydra)."""
    root = tmp_path_factory.mktemp("cli") / "log"
    plan = {
        # account: (label, campaign, persona, requests, seconds apart)
        "h1": ("distill", "C1", "hydra_worker", 300, 60),
        "h2": ("distill", "C1", "hydra_worker", 300, 70),
        "h3": ("distill", "C2", "hydra_worker", 50, 600),
        "h4": ("distill", "C2", "hydra_worker", 40, 600),
        "u1": ("benign", None, "casual", 20, 900),
        "u2": ("benign", None, "casual", 10, 900),
        "e1": ("benign", None, "enterprise_batch", 400, 30),
    }
    events, labels = [], []
    for acc, (label, campaign, persona, n, gap) in plan.items():
        labels.append(
            {"account_id": acc, "label": label, "campaign_id": campaign, "persona": persona}
        )
        events += [
            {
                "event_id": f"{acc}-{i}",
                "ts": T0 + timedelta(seconds=gap * i),
                "account_id": acc,
                "model": "m",
                "prompt": "p",
            }
            for i in range(n)
        ]
    write_table(root, "events", pa.Table.from_pylist(events))
    write_table(root, "labels", pa.Table.from_pylist(labels))
    return root


def test_scan_then_evaluate_side_by_side_with_report(log: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    vol, rnd = tmp_path / "verdicts-volume", tmp_path / "verdicts-random"
    r = runner.invoke(app, ["scan", str(log), "--out", str(vol), "--detector", "volume"])
    assert r.exit_code == 0, r.output
    assert "7 accounts" in r.output and "3 throttle" in r.output
    r = runner.invoke(app, ["scan", str(log), "--out", str(rnd), "--detector", "random"])
    assert r.exit_code == 0, r.output
    assert read_table(rnd, "verdicts").num_rows == 7

    report = tmp_path / "out" / "report.html"
    r = runner.invoke(app, ["evaluate", str(log), str(vol), str(rnd), "--report", str(report)])
    assert r.exit_code == 0, r.output
    # volume throttles h1, h2 (C1 caught) and the enterprise job e1.
    assert "50.0% (2/4)" in r.output  # account recall
    assert "33.33% (1/3)" in r.output  # false-positive rate
    assert "volume" in r.output and "random" in r.output

    html = report.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3  # score distributions, campaign timelines, PR curve
    for img in images:
        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "harvest before detection" in html and "enterprise_batch" in html


def test_evaluate_json(log: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    vol = tmp_path / "verdicts-volume"
    assert (
        runner.invoke(app, ["scan", str(log), "--out", str(vol), "--detector", "volume"]).exit_code
        == 0
    )
    r = runner.invoke(app, ["evaluate", str(log), str(vol), "--json"])
    assert r.exit_code == 0, r.output
    [d] = json.loads(r.output)
    assert d["name"] == "volume"
    assert d["account_recall"] == pytest.approx(0.5)
    assert d["campaign_recall"] == pytest.approx(0.5)
    assert d["fpr_by_persona"] == {"casual": 0.0, "enterprise_batch": 1.0}
    # h1 is throttled at its 201st request, h2 at its 201st; h3, h4 are never stopped.
    assert d["harvest_before_detection"] == pytest.approx((200 + 200 + 50 + 40) / (300 + 300 + 90))
    assert d["hard_negatives_blocked"] == 0  # a rate limit throttles, it never blocks


def test_evaluate_without_verdicts_is_one_line_error(log: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["evaluate", str(log), str(tmp_path)])
    assert r.exit_code != 0
    assert "no verdicts table" in str(r.exception)
