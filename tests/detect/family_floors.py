"""Per-family results of the default detector on a small simulated log (for
`test_family_floors`; `python -m tests.detect.family_floors DIR [RUN ...]` prints them to
set floors)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LogRun:
    """One log: a scenario file of scenarios/ (None: the default), a seed, a size."""

    name: str
    scenario: str | None
    seed: int
    events: int


@dataclass(frozen=True)
class FamilyResult:
    """One family's campaigns in one log, and the log's benign accounts."""

    accounts: int
    flagged: int
    events: int
    harvested: int
    benign: int
    flagged_benign: int
    hard_negatives_flagged: int

    @property
    def recall(self) -> float:
        return self.flagged / self.accounts

    @property
    def harvest(self) -> float:
        return self.harvested / self.events

    @property
    def false_positive_rate(self) -> float:
        return self.flagged_benign / self.benign


def run_log(run: LogRun, work: Path) -> dict[str, FamilyResult]:
    """Simulate and scan `run` under `work`; per campaign family, its result."""
    from distillguard.detect import scan
    from distillguard.report import HARD_NEGATIVE_PERSONAS, evaluate
    from distillguard.simulate import CampaignSpec, campaign_family, simulate

    log, verdicts = work / f"{run.name}-log", work / f"{run.name}-verdicts"
    scenario = REPO / "scenarios" / run.scenario if run.scenario else None
    simulate(log, seed=run.seed, scenario=scenario, events=run.events)
    scan(log, verdicts)
    ev = evaluate(log, verdicts)
    manifest = json.loads((log / "simulation.json").read_text())
    family = {c["id"]: campaign_family(CampaignSpec.model_validate(c))
              for c in manifest["scenario"]["campaigns"]}
    hard = sum(p.flagged for p in ev.personas
               if p.label == "benign" and p.persona in HARD_NEGATIVE_PERSONAS)
    out: dict[str, list[int]] = {}
    for c in ev.campaigns:
        t = out.setdefault(family[c.campaign_id], [0, 0, 0, 0])
        t[0] += c.accounts
        t[1] += c.flagged
        t[2] += c.events
        t[3] += c.harvested
    return {f: FamilyResult(a, fl, e, h, ev.benign_accounts, ev.flagged_benign, hard)
            for f, (a, fl, e, h) in out.items()}


if __name__ == "__main__":
    from tests.detect.test_family_floors import RUNS

    work = Path(sys.argv[1])
    for run in [RUNS[name] for name in sys.argv[2:]] or RUNS.values():
        for fam, r in run_log(run, work).items():
            print(f"{run.name} {fam}: recall {r.recall:.3f} ({r.flagged}/{r.accounts}), "
                  f"harvest {r.harvest:.4f} ({r.harvested}/{r.events}), FPR "
                  f"{r.false_positive_rate:.4f} ({r.flagged_benign}/{r.benign}), hard negatives "
                  f"flagged {r.hard_negatives_flagged}", flush=True)
