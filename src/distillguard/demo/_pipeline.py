"""The demo: simulate the default scenario, scan it, score it against the volume baseline."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distillguard.detect import DEFAULT_DETECTOR, scan
from distillguard.report import Evaluation, evaluate, write_report
from distillguard.simulate import simulate

#: `progress(step, done, total)`: called before each step and once at the end.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, eq=False)
class DemoResult:
    """Where the demo wrote things, and what it measured."""

    log_dir: Path
    verdicts_dirs: tuple[Path, ...]
    evaluations: tuple[Evaluation, ...]
    report: Path


def run_demo(
    out_dir: str | Path = "distillguard-demo",
    *,
    seed: int = 0,
    events: int | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Simulate the default scenario, scan it with the default detector and the `volume`
    baseline, evaluate both against the labels and write the HTML report.

    Args:
        out_dir: where `log/`, `verdicts-<detector>/` and `report.html` go. The demo replaces
            those (and only those) when they exist.
        seed: the simulator's seed.
        events: how many events to simulate (None: the scenario's own size).
        progress: called with (step, done, total) as the demo moves on.

    Returns:
        The paths written and the evaluations, default detector first.
    """
    out = Path(out_dir)
    log_dir = out / "log"
    detectors = [DEFAULT_DETECTOR, "volume" if DEFAULT_DETECTOR != "volume" else "random"]
    total = 2 + 2 * len(detectors)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(what, done, total)
        done += 1

    step(f"simulating the default scenario (seed {seed})")
    _clear(log_dir)
    simulate(log_dir, seed=seed, scenario=None, events=events)
    vdirs = []
    for name in detectors:
        step(f"scanning with {name}")
        vdir = out / f"verdicts-{name}"
        _clear(vdir)
        scan(log_dir, vdir, detector=name)
        vdirs.append(vdir)
    evaluations = []
    for name, vdir in zip(detectors, vdirs, strict=True):
        step(f"evaluating {name}")
        evaluations.append(evaluate(log_dir, vdir, name=name))
    step("writing the report")
    report = write_report(evaluations, out / "report.html", title="distillguard demo")
    if progress is not None:
        progress("done", total, total)
    return DemoResult(log_dir, tuple(vdirs), tuple(evaluations), report)


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
