"""One small simulated log shared by the simulator's property tests (seed reported on failure)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from distillguard.simulate import Corpora, SimulationResult, load_corpora, simulate

SEED = 11
EVENTS = 40_000


@pytest.fixture(scope="session")
def corpora(corpora_dir: Path) -> Corpora:
    return load_corpora(corpora_dir)


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory, corpora: Corpora) -> SimulationResult:
    out = tmp_path_factory.mktemp("sim") / "log"
    return simulate(out, seed=SEED, events=EVENTS, corpora=corpora)


@pytest.fixture(scope="session")
def con(sim: SimulationResult) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    d = sim.out
    c.execute(f"create view e as select * from read_parquet('{d}/events/*.parquet')")
    for t in ("accounts", "labels", "models"):
        c.execute(f"create view {t} as select * from read_parquet('{d}/{t}.parquet')")
    return c
