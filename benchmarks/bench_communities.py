"""The final community split: Leiden (graspologic-native) against networkx Louvain.

    python benchmarks/bench_communities.py                      # a 1M-event default log
    python benchmarks/bench_communities.py --events 3000000 --workdir /tmp/dg-bench
    python benchmarks/bench_communities.py --log /tmp/dg-seed1

Replays the log once (the assessment is cached in --workdir, keyed by the log's files), then
times `refine_campaigns` and the networkx Louvain version it replaced (kept below as it was)
on the same assessment in this process, alternately, and prints the best of --repeat runs of
each, their ratio, the load average (the machine is shared), and how the two splits compare:
campaigns, accounts whose campaign differs (up to renaming), and whether any campaign score
changed. Actions never depend on the split.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import time
from dataclasses import replace
from pathlib import Path

import networkx as nx
import numpy as np
from _docs import markdown_table, write_section

from distillguard.detect._communities import _IS_TEMPLATE, MAX_CUT_SHARE, refine_campaigns
from distillguard.detect._communities import _WEIGHTS as WEIGHTS
from distillguard.detect._config import load_config
from distillguard.detect._core import Assessment
from distillguard.detect._replay import replay
from distillguard.detect._state import LINK_KINDS
from distillguard.simulate import simulate


def _nx_cut_share(graph: nx.Graph, parts: list[set[object]]) -> float:
    where = {node: i for i, part in enumerate(parts) for node in part}
    total = cut = 0.0
    for u, v, w in graph.edges(data="weight"):
        total += w
        if where[u] != where[v]:
            cut += w
    return cut / total if total else 0.0


def louvain_refine(a: Assessment, min_accounts: int, seed: int = 0) -> Assessment:
    """`refine_campaigns` as it was with networkx Louvain (commit 6c54fc4)."""
    if not a.component_size:
        return a
    sp = a.suspicious_pairs
    component = np.full_like(a.component, -1)
    comp_kinds: dict[int, list[str]] = {}
    comp_size: dict[int, int] = {}
    campaign_score = a.campaign_score.copy()
    next_id = 0
    renamed: dict[int, int] = {}
    comp_of = a.component[sp[:, 2]]
    for cid in sorted(a.component_size):
        renamed[cid] = next_id
        idx = np.flatnonzero(a.component == cid)
        rows = sp[comp_of == cid]
        infra = rows[~_IS_TEMPLATE[rows[:, 0]]].tolist()
        graph = nx.Graph()
        graph.add_weighted_edges_from(
            (("a", acct), ("k", kind, key), float(WEIGHTS[kind])) for kind, key, acct, _sid in infra
        )
        parts = (
            nx.community.louvain_communities(graph, weight="weight", seed=seed)
            if graph.number_of_nodes()
            else []
        )
        if _nx_cut_share(graph, parts) > MAX_CUT_SHARE:
            parts = [set(graph.nodes)]
        groups = [sorted(n[1] for n in part if n[0] == "a") for part in parts]
        groups = [g for g in groups if g]
        big = [g for g in groups if len(g) >= min_accounts]
        if len(big) <= 1:
            big = [sorted(int(i) for i in idx)]
        else:
            placed = {i for g in big for i in g}
            leftovers = [int(i) for i in idx if int(i) not in placed]
            big.sort(key=len, reverse=True)
            big[0] = sorted(big[0] + leftovers)
        for members in big:
            m_idx = np.asarray(members, np.int64)
            component[m_idx] = next_id
            kinds = rows[np.isin(rows[:, 2], m_idx), 0]
            comp_kinds[next_id] = (sorted({LINK_KINDS[int(k)] for k in np.unique(kinds)})
                                   or a.component_kinds[cid])
            comp_size[next_id] = len(members)
            score = float(a.harvest[m_idx].mean()) * (1.0 - np.exp(-len(members) / 4.0))
            campaign_score[m_idx] = np.maximum(score, a.campaign_score[m_idx])
            next_id += 1
    return replace(
        a,
        component=component,
        campaign_score=a.campaign_score if next_id == 0 else campaign_score,
        component_kinds=comp_kinds,
        component_size=comp_size,
        cell_campaign=np.array([renamed[int(c)] for c in a.cell_campaign], np.int64),
    )


def assessment(log: Path, workdir: Path) -> Assessment:
    """The log's final assessment before the split (replayed once, then cached)."""
    stamp = "|".join(f"{p}:{p.stat().st_mtime_ns}" for p in sorted(log.rglob("*.parquet")))
    path = workdir / f"assessment-{hashlib.sha1(stamp.encode()).hexdigest()[:16]}.pickle"
    if path.exists():
        with path.open("rb") as f:
            cached: Assessment = pickle.load(f)
        return cached
    start = time.perf_counter()
    det, _ = replay(log, load_config(), None)
    a = det.assess()
    print(f"replayed {log} in {time.perf_counter() - start:.0f} s (cached at {path})")
    workdir.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(a, f)
    return a


def differing_accounts(x: np.ndarray, y: np.ndarray) -> int:
    """Accounts outside the best one-to-one matching of x's campaigns to y's (-1: none)."""
    pairs, count = np.unique(np.stack([x, y]), axis=1, return_counts=True)
    used_x: set[int] = set()
    used_y: set[int] = set()
    agree = 0
    for i in np.argsort(-count, kind="stable"):
        cx, cy = int(pairs[0, i]), int(pairs[1, i])
        if cx not in used_x and cy not in used_y:
            used_x.add(cx)
            used_y.add(cy)
            agree += int(count[i])
    return len(x) - agree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, help="a log to use (default: simulate the default scenario)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dg-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    log = args.log or args.workdir / f"log-{args.events}"
    if not (log / "labels.parquet").exists() and args.log is None:
        simulate(log, seed=0, scenario=None, events=args.events)
    a = assessment(log, args.workdir)
    min_accounts = load_config().links.min_accounts
    best = {"louvain": float("inf"), "leiden": float("inf")}
    out = {}
    for _ in range(args.repeat):
        for name, fn in (("louvain", louvain_refine), ("leiden", refine_campaigns)):
            start = time.perf_counter()
            out[name] = fn(a, min_accounts)
            best[name] = min(best[name], time.perf_counter() - start)
    old, new = out["louvain"], out["leiden"]
    print(f"{log}: {a.component.size:,} accounts, {len(a.component_size):,} components, "
          f"{len(a.suspicious_pairs):,} suspicious pairs; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"networkx Louvain {best['louvain']:.2f} s, Leiden {best['leiden']:.3f} s "
          f"(best of {args.repeat}): {best['louvain'] / best['leiden']:.0f}x")
    print(f"campaigns: Louvain {len(old.component_size)}, Leiden {len(new.component_size)}; "
          f"accounts in a different campaign: {differing_accounts(old.component, new.component)}; "
          f"campaign scores identical: {np.array_equal(old.campaign_score, new.campaign_score)}")
    write_section(__file__, "Campaign split (Leiden against networkx Louvain)", markdown_table(
        ["accounts", "networkx Louvain", "Leiden", "speed-up", "accounts in another campaign"],
        [[f"{a.component.size:,}", f"{best['louvain']:.2f} s", f"{best['leiden']:.3f} s",
          f"{best['louvain'] / best['leiden']:.0f}x", differing_accounts(old.component, new.component)]]))


if __name__ == "__main__":
    main()
