"""Distillation effectiveness and cost of every defence for flagged traffic, side by side.

For each task (a reasoning task: column addition with worked steps; a code task: stack-machine
programs for expressions, checked by running them, with a derivation line per operator),
trains a teacher, serves the attacker's harvest under each defence, trains one student per
seed on what was served and scores it on unseen problems
(`distillguard.antidistill.run_testbed`).

    effectiveness = student accuracy (defended) / student accuracy (undefended); target <= 0.5
    cost          = 1 - served accuracy (defended) / served accuracy (undefended); target <= 0.05

Each task writes its own section of docs/benchmarks.md.

Usage: python benchmarks/bench_antidistill.py [--task code,addition] [--quick] [--seeds 0,1,2] [--out out]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _docs import markdown_table, write_section  # noqa: E402

from distillguard.antidistill import ADS, TestbedConfig, TestbedResult, run_testbed  # noqa: E402
from distillguard.antidistill._charlm import LMConfig  # noqa: E402
from distillguard.antidistill._defences import sentence_rewrite  # noqa: E402
from distillguard.antidistill._tasks import EQUIVALENT, EQUIVALENT_ALONE, EQUIVALENT_CANONICAL  # noqa: E402
from distillguard.enforce import rewrite_reasoning  # noqa: E402

# the gateway's own English rewrite (action `rewrite`), applied to the trace's statements
GATEWAY_REWRITE = "gateway-rewrite"

TARGET_EFFECTIVENESS = 0.5  # issue 19: the student keeps at most half of what it would learn
TARGET_COST = 0.05  # ... while a person asking loses at most 5 % of correct answers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3-digit problems and short training (minutes)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--task", default="code,addition", help="comma-separated tasks, run one after the other")
    ap.add_argument("--lams", default="", help="tilts of antidistillation sampling (default: the config's)")
    ap.add_argument("--out", type=Path, default=Path("out"), help="folder of the JSON results, one per task")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # tiny models: a second thread only adds contention
    for task in args.task.split(","):
        # the code task's answers are programs: it also gets the defence that changes them,
        # and the harvester who canonicalises them
        own = (EQUIVALENT, EQUIVALENT_ALONE, EQUIVALENT_CANONICAL) if task == "code" else ()
        cfg = TestbedConfig(task=task, seeds=tuple(int(s) for s in args.seeds.split(",")),
                            defences=("none", "withhold", "summarise", "rewrite", GATEWAY_REWRITE, *own, ADS))
        if args.quick:
            cfg = replace(cfg, digits=3, teacher_examples=5000, harvest=1000, test=300,
                          teacher=LMConfig(steps=600), proxy=LMConfig(n_embd=64, steps=150),
                          student=LMConfig(n_embd=64, steps=500))
        if args.lams:
            cfg = replace(cfg, ads_lams=tuple(float(x) for x in args.lams.split(",")))
        run_task(cfg, args.out / f"antidistill-{task}.json")


def run_task(cfg: TestbedConfig, out: Path) -> None:
    t0 = time.perf_counter()
    run_testbed(cfg, lambda m: print(f"[{cfg.task} {time.perf_counter() - t0:7.1f}s] {m}", flush=True),
                lambda r: report(cfg, r, out, t0), extra={GATEWAY_REWRITE: sentence_rewrite(rewrite_reasoning)})


def effectiveness_ci95(res: TestbedResult, defence: str) -> tuple[float, float] | None:
    """t interval of the per-seed effectiveness (each seed's student over the undefended
    student of the same seed); None with fewer than two seeds."""
    from scipy import stats

    mine, base = res.get(defence).student_accuracy, res.get("none").student_accuracy
    ratios = np.asarray([m / b for m, b in zip(mine, base, strict=False) if b > 0])
    if ratios.size < 2:
        return None
    half = float(stats.t.ppf(0.975, ratios.size - 1) * ratios.std(ddof=1) / np.sqrt(ratios.size))
    return (float(ratios.mean()) - half, float(ratios.mean()) + half)


def dropped_trace_floor(res: TestbedResult) -> float | None:
    """Effectiveness of training on the answers alone (withhold's), when measured: what an
    attacker keeps under any defence that serves the right answer, by discarding the rest."""
    names = {r.defence for r in res.results if r.student_accuracy}
    return res.effectiveness("withhold") if "withhold" in names else None


def report(cfg: TestbedConfig, res: TestbedResult, out: Path, t0: float) -> None:
    """Print the table and write the JSON and the docs section (after every student seed)."""
    seeds = len(res.get("none").student_accuracy)
    task = cfg.make_task().describe()
    print(f"\nteacher accuracy {res.teacher_accuracy:.3f}; {task}; harvest "
          f"{cfg.harvest:,} answers, {seeds} of {len(cfg.seeds)} student seeds\n")
    table: list[list[object]] = []
    head = (f"{'defence':<30} {'served acc (95% CI)':>26} {'cost':>7} {'student acc (95% CI)':>26} "
            f"{'effectiveness (95% CI)':>26} {'chars':>6}")
    print(head)
    rows = []
    for r in res.results:
        lo, hi = r.ci95()
        slo, shi = r.served_ci95()
        eff, cost = res.effectiveness(r.defence), res.cost(r.defence)
        served = f"{r.served_accuracy:.3f} [{slo:.3f}, {shi:.3f}]"
        student = f"{r.mean:.3f} [{lo:.3f}, {hi:.3f}]" if r.student_accuracy else "not trained"
        eci = effectiveness_ci95(res, r.defence) if r.defence != "none" else None
        effs = (f"{eff:.2f}" + (f" [{eci[0]:.2f}, {eci[1]:.2f}]" if eci else "")) if r.student_accuracy else "-"
        print(f"{r.defence:<30} {served:>26} {cost:>7.3f} {student:>26} {effs:>26} {r.served_chars:>6.0f}")
        trained = bool(r.student_accuracy)
        rows.append({**asdict(r), "ci95": [lo, hi] if trained else None, "served_ci95": [slo, shi],
                     "effectiveness": eff if trained else None, "effectiveness_ci95": eci, "cost": cost})
        table.append([r.defence, served, f"{cost:.3f}", student, effs, f"{r.served_chars:.0f}"])
    met = [r.defence for r in res.results
           if r.defence != "none" and r.student_accuracy and res.cost(r.defence) <= TARGET_COST
           and res.effectiveness(r.defence) <= TARGET_EFFECTIVENESS]
    verdict = (f"Target (effectiveness <= {TARGET_EFFECTIVENESS} at cost <= {TARGET_COST}) met by: "
               + (", ".join(met) if met else "none") + ".")
    floor = dropped_trace_floor(res)
    if floor is not None:
        # a defence that serves the undefended results word for word cannot do better than
        # withhold against a harvester who drops the rest; one that changes the answer itself
        # is held to its own number (and its reasoning-dropped arm, where measured)
        still = [d for d in met if (max(res.effectiveness(d), floor) if res.get(d).answer_kept
                                    else res.effectiveness(d)) <= TARGET_EFFECTIVENESS]
        verdict += (f" A reasoning defence serves the undefended answer, so an attacker who drops what it serves as "
                    f"reasoning and trains on the answers alone keeps about withhold's effectiveness, {floor:.2f}: "
                    f"against that attacker the target is met by " + (", ".join(still) if still else "none") + ".")
    print("\n" + verdict)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": asdict(cfg), "teacher_accuracy": res.teacher_accuracy,
                               "defences": rows, "seconds": time.perf_counter() - t0}, indent=2))
    print(f"\nresults: {out}")
    intro = (f"Task: {task}; teacher accuracy {res.teacher_accuracy:.3f}; "
             f"{cfg.harvest:,} harvested answers; {seeds} of {len(cfg.seeds)} student seeds (95% t intervals; "
             "served accuracy: Wilson). Effectiveness = student accuracy kept (per seed against the undefended "
             "student of the same seed); cost = correct answers taken from the person asking. "
             f"`{GATEWAY_REWRITE}`: the gateway's `rewrite_reasoning` on the trace's statements. "
             + (f"`{EQUIVALENT}`: the program itself in an equivalent form drawn per answer (operands of + and * "
                "in either order, identities such as v*1 and v+(x-x)), and its derivation under fresh names and "
                f"notation; `{EQUIVALENT_ALONE}`: the same with the derivation dropped by the harvester; "
                f"`{EQUIVALENT_CANONICAL}`: the same after the harvester canonicalises every program (identities "
                "removed, the operands of + and * sorted, the derivation rewritten for that program), which is "
                "exactly what canonicalising the undefended answers gives (tested). "
                if EQUIVALENT in cfg.defences else "")
             +
             f"Antidistillation sampling at temperature {cfg.ads.temperature:g}, eps {cfg.ads.eps:g}, tilts lambda = "
             f"{', '.join(f'{x:g}' for x in cfg.ads_lams)} (one proxy student; lambda 0 is plain sampling), "
             + ("the tilt on the reasoning only, the answer greedy; " if cfg.ads_answer_forced
                else "every token tilted, the program included; ")
             + f"the nucleus (top-p {cfg.ads.top_p:g}) of the tilted distribution; "
             + f"students at every tilt whose cost is <= {cfg.ads_student_max_cost}. "
             f"Run time {time.perf_counter() - t0:.0f} s with one torch thread.")
    write_section(__file__, f"Answers that teach a flagged account less: {cfg.task}",
                  intro + "\n\n" + verdict + "\n\n" + markdown_table(
                      ["defence", "served accuracy", "cost", "student accuracy (95% CI)", "effectiveness (95% CI)",
                       "chars served"], table), part=cfg.task)


if __name__ == "__main__":
    main()
