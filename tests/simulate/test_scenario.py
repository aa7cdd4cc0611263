"""Scenario files, scaling, corpora lookup errors and the `distillguard simulate` command."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distillguard._errors import ScenarioError
from distillguard.cli import app
from distillguard.simulate import (
    Corpora,
    default_scenario_text,
    find_corpora,
    load_scenario,
    parse_scenario,
    simulate,
)

ROOT = Path(__file__).resolve().parents[2]


def test_default_scenario_is_documented_and_about_a_million_events() -> None:
    text = default_scenario_text()
    s = parse_scenario(text)
    assert 0.9e6 < s.total_events() < 1.1e6
    assert 10_000 <= s.casual.accounts + s.developer.accounts <= 20_000
    assert {c.id for c in s.campaigns} == {
        "hydra-coding", "agentic-tools", "reasoning-rubric", "template-variation", "reseller-mix"}
    # every knob of a benign section carries a comment
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")) and not line.startswith(("id", "name")):
            key = line.split("=")[0].strip()
            if key in ("accounts", "events", "content", "persona", "released_days"):
                continue
            assert "#" in line or key in text.split("# Knobs of every campaign")[1], f"undocumented knob {key}"


def test_holdout_scenarios_run_and_differ(tmp_path: Path, corpora: Corpora) -> None:
    files = sorted((ROOT / "scenarios").glob("holdout_*.toml"))
    assert len(files) >= 2
    default = load_scenario()
    for f in files:
        s = load_scenario(f)
        assert s.campaigns and s.model_dump() != default.model_dump()
        r = simulate(tmp_path / f.stem, seed=1, scenario=f, events=3000, corpora=corpora)
        labels = pq.read_table(tmp_path / f.stem / "labels.parquet").to_pydict()
        got = {c for c in labels["campaign_id"] if c is not None}
        assert r.events > 2000 and got == {c.id for c in s.campaigns}


def test_scaling_keeps_every_group() -> None:
    s = load_scenario().scaled(10_000)
    assert 8_000 < s.total_events() < 14_000
    assert s.enterprise_batch.accounts >= 1 and s.classroom.classes >= 1
    assert all(c.accounts >= 1 and c.events >= 1 for c in s.campaigns)
    with pytest.raises(ScenarioError, match="at least 1"):
        s.scaled(0)


def test_bad_scenarios_are_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse_scenario("[casual\naccounts = 1")
    with pytest.raises(ScenarioError) as exc:
        parse_scenario("[casual]\naccuonts = 5\nevents = -1\n")
    msg = str(exc.value)
    assert "2 problem(s)" in msg and "casual.accuonts" in msg and "casual.events" in msg
    with pytest.raises(ScenarioError, match="not listed under"):
        parse_scenario('[[campaigns]]\nid = "x"\nswitch_to_model = "nope"\n')
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(tmp_path / "missing.toml")


def test_missing_corpora_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ScenarioError, match="does not hold the prompt corpora"):
        find_corpora(tmp_path)
    monkeypatch.setenv("DISTILLGUARD_CORPORA", str(tmp_path))
    with pytest.raises(ScenarioError, match="DISTILLGUARD_CORPORA"):
        find_corpora()


def test_cli_simulate(tmp_path: Path, corpora: Corpora, corpora_dir: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["simulate", "--print-default-scenario"])
    assert r.exit_code == 0 and parse_scenario(r.output).total_events() > 0
    out = tmp_path / "log"
    r = runner.invoke(app, ["simulate", "--out", str(out), "--seed", "3", "--events", "3000",
                            "--corpora", str(corpora_dir), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "events" in r.output and pq.read_metadata(out / "events" / "part-00000.parquet").num_rows > 2000
    # writing into a log that already holds events is refused, nothing is overwritten
    with pytest.raises(ScenarioError, match="already holds events"):
        simulate(out, seed=3, events=3000, corpora=corpora)


def test_local_window_start_means_utc() -> None:
    s = parse_scenario("[window]\nstart = 2026-02-02T00:00:00\ndays = 1.5\n")
    assert s.window.start.utcoffset() is not None and s.window.start.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
