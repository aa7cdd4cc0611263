"""The detector registry: a name (and an engine) to a function that scans a log.

A detector is `fn(log_dir: Path, config: Path | None) -> ScanResult`. Built-in detectors are
listed in `_BUILTIN` as "module:function" strings and imported only when used, so importing
`distillguard.detect` stays cheap; anything else registers itself with `register_detector`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa

from distillguard._errors import ConfigError

Engine = Literal["duckdb", "spark", "spark-streaming"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark", "spark-streaming")

#: The detector `scan` and `distillguard scan` use when none is named.
DEFAULT_DETECTOR = "graph"


@dataclass(frozen=True)
class ScanResult:
    """What a scan found: one verdict per account, one row per detected campaign.

    `tables` holds optional extra tables a detector writes next to them
    (e.g. `templates`, `links`), keyed by table name.
    """

    verdicts: pa.Table
    campaigns: pa.Table
    tables: dict[str, pa.Table] = field(default_factory=dict)


DetectorFn = Callable[[Path, Path | None], ScanResult]

# (name, engine) -> "module:function", imported on first use.
_BUILTIN: dict[tuple[str, Engine], str] = {
    ("graph", "duckdb"): "distillguard.detect._replay:graph_detector",
    ("graph", "spark"): "distillguard.detect._spark:graph_detector_spark",
    ("graph", "spark-streaming"): "distillguard.detect._spark_stream:graph_detector_spark_stream",
    ("volume", "duckdb"): "distillguard.detect._baselines:volume_detector",
    ("random", "duckdb"): "distillguard.detect._baselines:random_detector",
    ("mmd", "duckdb"): "distillguard.detect._mmd:mmd_detector",
}

_REGISTERED: dict[tuple[str, Engine], DetectorFn] = {}


def register_detector(name: str, fn: DetectorFn, *, engine: Engine = "duckdb") -> None:
    """Make `fn` available as detector `name` on `engine` (replacing any earlier one).

    Args:
        name: what users pass to `--detector`.
        fn: `fn(log_dir, config) -> ScanResult`.
        engine: the engine `fn` runs on.
    """
    if engine not in ENGINES:
        raise ConfigError(f"Unknown engine {engine!r}; use one of {', '.join(ENGINES)}.")
    _REGISTERED[(name, engine)] = fn


def detector_names(engine: Engine | None = None) -> list[str]:
    """The names of the detectors available (on `engine`, or on any engine)."""
    keys = set(_BUILTIN) | set(_REGISTERED)
    return sorted({n for n, e in keys if engine is None or e == engine})


def get_detector(name: str, engine: Engine = "duckdb") -> DetectorFn:
    """Look a detector up by name and engine.

    Raises:
        ConfigError: no such detector, or it does not run on `engine`.
    """
    key = (name, engine)
    if key in _REGISTERED:
        return _REGISTERED[key]
    if key in _BUILTIN:
        module, _, attr = _BUILTIN[key].partition(":")
        fn: DetectorFn = getattr(importlib.import_module(module), attr)
        return fn
    if engine not in ENGINES:
        raise ConfigError(f"Unknown engine {engine!r}; use one of {', '.join(ENGINES)}.")
    if name in detector_names():
        raise ConfigError(
            f"Detector {name!r} does not run on the {engine} engine; it runs on "
            f"{', '.join(e for e in ENGINES if name in detector_names(e))}."
        )
    raise ConfigError(f"Unknown detector {name!r}; choose one of {', '.join(detector_names())}.")
