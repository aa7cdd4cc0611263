"""Distillation effectiveness and cost of every defence for flagged traffic, side by side.

Trains a teacher on a step-by-step task with checkable answers (column addition with a
worked trace), serves the attacker's harvest under each defence, trains one student per seed
on what was served and scores it on unseen problems (`distillguard.antidistill.run_testbed`).

    effectiveness = student accuracy (defended) / student accuracy (undefended); target <= 0.5
    cost          = 1 - served accuracy (defended) / served accuracy (undefended); target <= 0.05

Usage: python benchmarks/bench_antidistill.py [--quick] [--seeds 0,1,2] [--out out/antidistill.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _docs import markdown_table, write_section  # noqa: E402

from distillguard.antidistill import TestbedConfig, TestbedResult, run_testbed  # noqa: E402
from distillguard.antidistill._charlm import LMConfig  # noqa: E402

TARGET_EFFECTIVENESS = 0.5  # issue 19: the student keeps at most half of what it would learn
TARGET_COST = 0.05  # ... while a person asking loses at most 5 % of correct answers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3-digit problems and short training (minutes)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=Path("out/antidistill.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # tiny models: a second thread only adds contention
    cfg = TestbedConfig(seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.quick:
        cfg = replace(cfg, digits=3, teacher_examples=5000, harvest=1000, test=300,
                      teacher=LMConfig(steps=600), proxy=LMConfig(n_embd=64, steps=150),
                      student=LMConfig(n_embd=64, steps=500))
    t0 = time.perf_counter()
    run_testbed(cfg, lambda m: print(f"[{time.perf_counter() - t0:7.1f}s] {m}", flush=True),
                lambda r: report(cfg, r, args.out, t0))


def report(cfg: TestbedConfig, res: TestbedResult, out: Path, t0: float) -> None:
    """Print the table and write the JSON and the docs section (after every student seed)."""
    seeds = len(res.get("none").student_accuracy)
    print(f"\nteacher accuracy {res.teacher_accuracy:.3f}; {cfg.digits}-digit addition, harvest "
          f"{cfg.harvest:,} answers, {seeds} of {len(cfg.seeds)} student seeds\n")
    table: list[list[object]] = []
    head = (f"{'defence':<30} {'served acc (95% CI)':>26} {'cost':>7} {'student acc (95% CI)':>26} "
            f"{'effectiveness':>14} {'chars':>6}")
    print(head)
    rows = []
    for r in res.results:
        lo, hi = r.ci95()
        slo, shi = r.served_ci95()
        eff, cost = res.effectiveness(r.defence), res.cost(r.defence)
        served = f"{r.served_accuracy:.3f} [{slo:.3f}, {shi:.3f}]"
        student = f"{r.mean:.3f} [{lo:.3f}, {hi:.3f}]" if r.student_accuracy else "not trained"
        effs = f"{eff:.2f}" if r.student_accuracy else "-"
        print(f"{r.defence:<30} {served:>26} {cost:>7.3f} {student:>26}{'':>3} {effs:>14} {r.served_chars:>6.0f}")
        trained = bool(r.student_accuracy)
        rows.append({**asdict(r), "ci95": [lo, hi] if trained else None, "served_ci95": [slo, shi],
                     "effectiveness": eff if trained else None, "cost": cost})
        table.append([r.defence, served, f"{cost:.3f}", student, effs, f"{r.served_chars:.0f}"])
    met = [r.defence for r in res.results
           if r.defence != "none" and res.cost(r.defence) <= TARGET_COST and res.effectiveness(r.defence) <= TARGET_EFFECTIVENESS]
    verdict = (f"Target (effectiveness <= {TARGET_EFFECTIVENESS} at cost <= {TARGET_COST}) met by: "
               + (", ".join(met) if met else "none") + ".")
    print("\n" + verdict)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": asdict(cfg), "teacher_accuracy": res.teacher_accuracy,
                               "defences": rows, "seconds": time.perf_counter() - t0}, indent=2))
    print(f"\nresults: {out}")
    intro = (f"{cfg.digits}-digit addition with worked traces; teacher accuracy {res.teacher_accuracy:.3f}; "
             f"{cfg.harvest:,} harvested answers; {seeds} of {len(cfg.seeds)} student seeds (95% t intervals). "
             "Effectiveness = student accuracy kept; cost = correct answers taken from the person asking. "
             f"Antidistillation sampling at tilts lambda = {', '.join(f'{x:g}' for x in cfg.ads_lams)} (one proxy student); "
             f"students are trained at its operating point, the strongest tilt whose cost is <= {cfg.ads_max_cost}. "
             f"Run time {time.perf_counter() - t0:.0f} s with one torch thread.")
    write_section(__file__, "Answers that teach a flagged account less", intro + "\n\n" + verdict + "\n\n" + markdown_table(
        ["defence", "served accuracy", "cost", "student accuracy (95% CI)", "effectiveness", "chars served"], table))


if __name__ == "__main__":
    main()
