"""Tune and debug the graph detector on a simulated log, quickly.

Signals are computed once per log and cached; each run then replays them with the shipped
config plus any `--set section.key=value` overrides and prints what a tuner needs: recall,
false positives per persona, harvest per campaign. `--why ACCOUNT` replays up to the moment
an account was first flagged and prints its reasons then.

    python benchmarks/detector_lab.py /tmp/dg-seed1 --set links.min_accounts=4
    python benchmarks/detector_lab.py /tmp/dg-seed1 --set evidence.fresh.enabled=false
    python benchmarks/detector_lab.py /tmp/dg-seed1 --why acct-000123

Tune on seeds you generate yourself; never on `scenarios/holdout_*.toml`: those are how the
README's numbers stay honest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from distillguard.detect._communities import refine_campaigns
from distillguard.detect._config import DetectConfig
from distillguard.detect._output import campaign_table, verdict_table
from distillguard.detect._replay import replay
from distillguard.detect._stream import compute_signals
from distillguard.report import evaluate
from distillguard.traffic import LogWriter, TrafficLog


def cached_signals(log: Path, cache: Path) -> pl.DataFrame:
    stamp = "|".join(f"{p}:{p.stat().st_mtime_ns}" for p in sorted(log.rglob("events*")))
    path = cache / f"{hashlib.sha1(stamp.encode()).hexdigest()[:16]}.parquet"
    if path.exists():
        return pl.read_parquet(path)
    t = time.perf_counter()
    sig = compute_signals(log)
    cache.mkdir(parents=True, exist_ok=True)
    sig.write_parquet(path)
    print(f"signals: {sig.height:,} events in {time.perf_counter() - t:.1f} s (cached at {path})")
    return sig


def config_with(sets: list[str]) -> DetectConfig:
    raw: dict[str, Any] = tomllib.loads(
        resources.files("distillguard.detect").joinpath("detect_config.toml").read_text())
    for item in sets:
        key, _, value = item.partition("=")
        *sections, name = key.split(".")  # evidence.ip.weight: a section within a section
        table = raw
        for section in sections:
            table = table.setdefault(section, {})
        table[name] = tomllib.loads(f"v = {value}")["v"]
    return DetectConfig.model_validate(raw)


def run(log: Path, sig: pl.DataFrame, cfg: DetectConfig, out: Path | None) -> None:
    t = time.perf_counter()
    det, first_flag = replay(log, cfg, sig)
    a = refine_campaigns(det.assess(), cfg.links.min_accounts)
    verdicts = verdict_table(det.state, a, cfg, first_flag, lambda _eid: "")
    elapsed = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = out or Path(tmp_dir)
        with LogWriter(tmp) as w:
            w.write("verdicts", verdicts)
            w.write("campaigns", campaign_table(det.state, a, verdicts))
        ev = evaluate(log, tmp, name="lab")
    print(f"replay {elapsed:.1f} s | recall {ev.account_recall:.4f} | FPR {ev.false_positive_rate:.5f} "
          f"({ev.flagged_benign}/{ev.benign_accounts}) | harvest {ev.harvest_before_detection:.4f}")
    for p in ev.personas:
        if p.flagged or p.label == "distill":
            print(f"  {p.label:8} {p.persona:20} flagged {p.flagged:5}/{p.accounts:<5} blocked {p.blocked}")
    for c in ev.campaigns:
        print(f"  campaign {c.campaign_id:22} flagged {c.flagged:5}/{c.accounts:<5} "
              f"harvest {c.harvest_share:7.2%} of {c.events:,}")


def why(log: Path, sig: pl.DataFrame, cfg: DetectConfig, account: str) -> None:
    det, first_flag = replay(log, cfg, sig)
    i = det.state.index.get(account)
    if i is None:
        print(f"{account}: not in the log")
        return
    end = int(first_flag[i])
    cut = sig.filter(pl.col("ts_us") < end) if end >= 0 else sig
    det, _ = replay(log, cfg, cut)
    a = refine_campaigns(det.assess(), cfg.links.min_accounts)
    v = verdict_table(det.state, a, cfg, np.full(det.state.size, -1, np.int64), lambda _eid: "")
    row = v.slice(det.state.index[account], 1).to_pylist()[0]
    when = "never flagged; state at the end" if end < 0 else f"flagged at {end} (us)"
    print(f"{account}: {when}: action {row['action']} score {row['score']:.3f} campaign {row['campaign_id']}")
    for r in json.loads(row["reasons"]):
        print("  -", r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--why", action="append", default=[], metavar="ACCOUNT")
    ap.add_argument("--out", type=Path, help="keep the verdicts here")
    ap.add_argument("--hours", type=float, help="replay only the log's first HOURS")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "distillguard-lab")
    args = ap.parse_args()
    if not TrafficLog(args.log).has("labels"):
        raise SystemExit(f"{args.log} has no labels: simulate it with `distillguard simulate`")
    sig = cached_signals(args.log, args.cache)
    if args.hours:
        sig = sig.filter(pl.col("ts_us") < sig["ts_us"].min() + int(args.hours * 3600e6))
    cfg = config_with(args.set)
    for account in args.why:
        why(args.log, sig, cfg, account)
    if not args.why:
        run(args.log, sig, cfg, args.out)


if __name__ == "__main__":
    main()
