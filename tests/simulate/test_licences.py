"""Permissive-only by default (issue 15 item 1): the default scenario reads no opt-in corpus,
the simulator runs from a folder without them (as in the wheel), and a scenario that names one
gets it with its licence printed, or a clear error when it is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from distillguard._errors import ScenarioError
from distillguard.simulate import (
    OPT_IN_LICENCES,
    PERMISSIVE_SETS,
    load_corpora,
    load_scenario,
    simulate,
)

EVENTS = 3000


@pytest.fixture(scope="module")
def permissive_dir(tmp_path_factory: pytest.TempPathFactory, corpora_dir: Path) -> Path:
    """A copy of the corpora folder without the opt-in sets, like the wheel's."""
    d = tmp_path_factory.mktemp("permissive")
    for f in corpora_dir.iterdir():
        if f.is_file() and f.name.split(".")[0] not in OPT_IN_LICENCES:
            shutil.copy(f, d / f.name)
    return d


def test_default_scenario_opts_in_to_nothing() -> None:
    assert load_scenario().opt_in_corpora == []
    assert not set(PERMISSIVE_SETS) & set(OPT_IN_LICENCES)


def test_simulates_from_a_folder_without_opt_in_sets(permissive_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    corp = load_corpora(permissive_dir)
    assert set(corp.texts) == set(PERMISSIVE_SETS)
    r = simulate(tmp_path / "log", seed=2, events=EVENTS, corpora=corp)
    assert r.events > 0.5 * EVENTS
    assert "opt-in corpus" not in capsys.readouterr().err
    # and no text of an opt-in set: none of their prompts occurs verbatim in the log
    full = load_corpora()
    nc = {t for name in OPT_IN_LICENCES if name in full.texts for t in full.texts[name] if len(t) > 40}
    prompts = pq.read_table(tmp_path / "log" / "events", columns=["prompt"]).column("prompt").to_pylist()
    assert not nc & set(prompts)


def test_opt_in_by_name_prints_licence_or_fails_clearly(permissive_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    sc = load_scenario().model_copy(update={"opt_in_corpora": ["alpaca_5k"]})
    with pytest.raises(ScenarioError, match="alpaca_5k.*opt_in_corpora"):
        simulate(tmp_path / "missing", seed=2, events=EVENTS, scenario=sc, corpora=permissive_dir)
    full = load_corpora()
    if "alpaca_5k" not in full.texts:
        pytest.fail("the repository's corpora folder should hold alpaca_5k")
    simulate(tmp_path / "opted", seed=2, events=EVENTS, scenario=sc, corpora=full)
    assert OPT_IN_LICENCES["alpaca_5k"] in capsys.readouterr().err
    prompts = pq.read_table(tmp_path / "opted" / "events", columns=["prompt"]).column("prompt").to_pylist()
    alpaca = {t for t in full.texts["alpaca_5k"] if len(t) > 40}
    assert sum(1 for p in prompts if p in alpaca) > 0  # sent verbatim (plain-instruction requests)
