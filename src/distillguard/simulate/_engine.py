"""`simulate()`: plan every event as numbers, sort by time, render and write in chunks."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distillguard._errors import ScenarioError
from distillguard.simulate._benign import benign_population
from distillguard.simulate._campaigns import all_campaigns
from distillguard.simulate._content import build_content
from distillguard.simulate._corpora import OPT_IN_LICENCES, Corpora, load_corpora
from distillguard.simulate._env import Env
from distillguard.simulate._lookalikes import lookalikes
from distillguard.simulate._scenario import Scenario, load_scenario, window_bounds_us
from distillguard.simulate._text import TextPools, response_index
from distillguard.simulate._world import HOUR_US, Plan, World
from distillguard.traffic import EVENTS, write_table

CHUNK_ROWS = 200_000
TS_TYPE = pa.timestamp("us", tz="UTC")
DICT_COLUMNS = ["account_id", "key_id", "ip", "user_agent", "endpoint", "model", "system", "response"]
# Columns handed to Parquet as Arrow dictionary arrays (indices into a pool): no per-row copy of
# long strings and no re-hashing when Parquet dictionary-encodes them. The files still hold
# plain UTF-8 columns (the Arrow schema is not stored), so readers see `string`.
POOLED = ("system", "response", "user_agent", "endpoint", "model")
# Optional v1.1 columns the simulator leaves out (no batches; `end_user` only where some reseller
# passes its customers' ids); readers fill them with nulls.
UNFILLED = ("end_user", "batch_id")


def _write_schema(unfilled: tuple[str, ...]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in POOLED else f
            for f in EVENTS.schema
            if f.name not in unfilled
        ]
    )


WRITE_SCHEMA = _write_schema(UNFILLED)
WRITE_SCHEMA_END_USERS = _write_schema(("batch_id",))


@dataclass(frozen=True)
class SimulationResult:
    """What a run wrote."""

    out: Path
    events: int
    accounts: int
    distill_accounts: int
    campaigns: int
    seconds: float
    files: tuple[Path, ...]


class _Progress:
    """A rich progress bar when asked for, else nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p: Any = None
        self._task: Any = None

    @contextmanager
    def run(self, total: int) -> Iterator[_Progress]:
        if not self.enabled:
            yield self
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description:<32}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                      TimeElapsedColumn(), transient=False) as p:
            self._p = p
            self._task = p.add_task("simulate", total=total)
            yield self

    def step(self, what: str, advance: float = 1.0) -> None:
        if self._p is not None and self._task is not None:
            self._p.update(self._task, description=what, advance=advance)


def _plain_share(s: Scenario, n_first_bases: int) -> float:
    """Share of benign first turns sent without pasted context, chosen so that unrelated users
    send the exact same first prompt about `exact_share_target` of the time (docs/simulator.md)."""
    first_turns = s.casual.events / s.casual.turns_mean + s.reseller.events / 2.4
    per_base = max(1.0, first_turns / max(1, n_first_bases))
    # collision mass of the plain variants: 10 body variants x greeting x closing choices
    mass = 0.1 * (0.65**2 + 0.35**2 / 40) ** 2
    return float(np.clip(np.sqrt(s.exact_share_target / (mass * per_base)), 0.02, 0.6))


def simulate(
    out: str | Path,
    seed: int = 0,
    scenario: Scenario | str | Path | None = None,
    events: int | None = None,
    corpora: str | Path | Corpora | None = None,
    progress: bool = False,
) -> SimulationResult:
    """Simulate a traffic log with labels and write it to `out`.

    Args:
        out: directory to write `events/part-*.parquet`, `accounts`, `models`, `labels`.
        seed: the run is a pure function of (scenario, seed, corpora).
        scenario: a `Scenario`, a TOML path, or None for the shipped default.
        events: scale the whole scenario to about this many events.
        corpora: the corpora folder (default: found as `find_corpora` says) or loaded `Corpora`.
        progress: show a rich progress bar.

    Returns:
        A `SimulationResult` with counts and the files written.

    Raises:
        ScenarioError: for an invalid scenario or missing corpora.
    """
    t_start = time.perf_counter()
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if events is not None:
        sc = sc.scaled(events)
    corp = corpora if isinstance(corpora, Corpora) else load_corpora(corpora)
    for name in sc.opt_in_corpora:
        corp.set_texts(name)  # a clear error before any work when an opted-in set is missing
        print(f"distillguard simulate: using opt-in corpus {name}: {OPT_IN_LICENCES[name]}", file=sys.stderr)
    out = Path(out)
    if (out / "events").exists() and any((out / "events").iterdir()):
        raise ScenarioError(f"The output directory {out} already holds events; choose an empty directory.")
    children = np.random.SeedSequence(seed).spawn(16 + len(sc.campaigns))
    rngs = [np.random.default_rng(c) for c in children]
    start_us, end_us = window_bounds_us(sc)
    prog = _Progress(progress)
    with prog.run(total=12 + len(sc.campaigns)) as pg:
        pg.step("building text pools", 0)
        pools = TextPools(sc.max_prompt_chars)
        first_turns = int(sc.casual.events / sc.casual.turns_mean + sc.reseller.events / 2.4)
        n_ctx = int(np.clip(first_turns, 20_000, 400_000))
        content = build_content(corp, pools, rngs[0], n_ctx, sc.opt_in_corpora)
        world = World(start_us, end_us, rngs[1])
        model_ix = {m.name: i for i, m in enumerate(sc.models)}
        release_us = {m.name: start_us + int(m.released_days * 24 * HOUR_US) for m in sc.models}
        env = Env(sc, corp, content, world, Plan(), model_ix, release_us,
                  _plain_share(sc, content.sets["first"].n_base))
        pg.step("benign population", 2)
        benign_population(env, rngs[2:9])
        lookalikes(env, rngs[11:15])
        pg.step("campaigns", 4)
        all_campaigns(env, rngs[16:])
        pg.step("sorting the plan", len(sc.campaigns))
        plan = env.plan.concat()
        order = np.lexsort((plan["acct"], plan["ts"]))
        for k in plan:
            plan[k] = plan[k][order]
        del order
        pg.step("writing accounts and labels", 1)
        n_acc, n_dist = _write_accounts(out, world, plan, sc, rngs[9])
        pg.step("writing events", 1)
        files = _write_events(out, env, plan, rngs[10], sc.events_per_part, pg, 4)
    campaigns = len({c for c, lab in zip(world.acc.campaign_id, world.acc.label, strict=True) if lab == "distill"})
    _write_manifest(out, sc, seed, int(len(plan["ts"])), n_acc, n_dist)
    return SimulationResult(out, int(len(plan["ts"])), n_acc, n_dist, campaigns,
                            time.perf_counter() - t_start, tuple(files))


def _write_manifest(out: Path, sc: Scenario, seed: int, events: int, accounts: int, distill: int) -> None:
    """`simulation.json`: what produced this log (seed, the scenario as run after scaling, sizes).
    No wall-clock values, so the same seed still writes identical files."""
    from distillguard import __version__

    manifest = {
        "generator": f"distillguard {__version__} simulate",
        "seed": seed,
        "events": events,
        "accounts": accounts,
        "distill_accounts": distill,
        "scenario": sc.model_dump(mode="json"),
    }
    (out / "simulation.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _write_accounts(out: Path, w: World, plan: dict[str, np.ndarray], sc: Scenario,
                    rng: np.random.Generator) -> tuple[int, int]:
    a = w.acc
    n = len(a.account_id)
    counts = np.bincount(plan["acct"], minlength=n)
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, plan["acct"], plan["ts"])
    created = np.asarray(a.created_us, np.int64)
    # safety net: nobody sends a request before their account exists
    early = first < created
    created[early] = first[early] - rng.integers(60_000_000, 6 * HOUR_US, size=int(early.sum()))
    keep = counts > 0
    idx = np.flatnonzero(keep)

    def col(values: list[object]) -> list[object]:
        return [values[int(i)] for i in idx]

    accounts = pa.table({
        "account_id": pa.array(col(a.account_id), pa.string()),  # type: ignore[arg-type]
        "created_at": pa.array(created[idx], TS_TYPE),
        "signup_channel": pa.array(col(a.signup_channel), pa.string()),  # type: ignore[arg-type]
        "email_domain": pa.array(col(a.email_domain), pa.string()),  # type: ignore[arg-type]
        "payment_fingerprint": pa.array(col(a.payment_fingerprint), pa.string()),  # type: ignore[arg-type]
        "country": pa.array(col(a.country), pa.string()),  # type: ignore[arg-type]
        "verified": pa.array(col(a.verified), pa.bool_()),  # type: ignore[arg-type]
    })
    labels = pa.table({
        "account_id": accounts.column("account_id"),
        "label": pa.array(col(a.label), pa.string()),  # type: ignore[arg-type]
        "campaign_id": pa.array(col(a.campaign_id), pa.string()),  # type: ignore[arg-type]
        "persona": pa.array(col(a.persona), pa.string()),  # type: ignore[arg-type]
        "distill_share": pa.array(col(a.distill_share), pa.float64()),  # type: ignore[arg-type]
    })
    models = pa.table({
        "model": pa.array([m.name for m in sc.models], pa.string()),
        "released_at": pa.array(
            [w.start_us + int(m.released_days * 24 * HOUR_US) for m in sc.models], TS_TYPE
        ),
    })
    write_table(out, "accounts", accounts)
    write_table(out, "labels", labels)
    if w.end_users.end_user:
        write_table(out, "end_user_labels", _end_user_labels(w, plan))
    write_table(out, "models", models)
    return int(keep.sum()), int(sum(1 for i in idx if a.label[int(i)] == "distill"))


def _end_user_labels(w: World, plan: dict[str, np.ndarray]) -> pa.Table:
    """Ground truth per declared end user that sent a request (an added, simulator-only table
    beside `labels`): account_id, end_user, label, campaign_id."""
    e = w.end_users
    used = np.flatnonzero(np.bincount(plan["euser"][plan["euser"] >= 0], minlength=len(e.end_user)))
    return pa.table({
        "account_id": pa.array([w.acc.account_id[e.acct[i]] for i in used], pa.string()),
        "end_user": pa.array([e.end_user[i] for i in used], pa.string()),
        "label": pa.array([e.label[i] for i in used], pa.string()),
        "campaign_id": pa.array([e.campaign_id[i] for i in used], pa.string()),
    })


def _dedup(arrays: dict[str, pa.Array], name: str) -> None:
    """Store pool `name` as unique values plus a remap (`name#map`): Parquet writes a dictionary
    array directly, and deterministically, only when its values are unique."""
    values = arrays[name].to_pylist()
    uniq = sorted(set(values))
    pos = {v: i for i, v in enumerate(uniq)}
    arrays[name] = pa.array(uniq, pa.string())
    arrays[name + "#map"] = pa.array(np.asarray([pos[v] for v in values], np.int32))


def _pooled(arrays: dict[str, pa.Array], name: str, ix: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    remap = arrays[name + "#map"].to_numpy(zero_copy_only=False)
    return pa.DictionaryArray.from_arrays(pa.array(remap[ix], mask=mask), arrays[name])


def _render(env: Env, p: dict[str, np.ndarray], first_row: int, rng: np.random.Generator,
            arrays: dict[str, pa.Array]) -> pa.Table:
    n = len(p["ts"])
    pools = env.content.pools
    prompt = pools.render_prompts(p["lead"], p["ctx"], p["body"], p["tail"])
    sys_ix = pa.array(p["system"].astype(np.int32), mask=p["system"] == 0)
    system = pa.DictionaryArray.from_arrays(sys_ix, arrays["system_dict"])
    ok = p["status"] == 200
    maxtok = p["maxtok"]
    comp = np.where(maxtok > 0, np.minimum(p["comp"], maxtok), p["comp"])
    comp = np.where(ok, comp, 0).astype(np.int32)
    resp = _pooled(arrays, "response", response_index(comp, rng), ~ok)
    plen = pc.binary_length(prompt).to_numpy(zero_copy_only=False).astype(np.int64)
    sys_len = pc.binary_length(arrays["system"]).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    slen = sys_len[p["system"]]
    ptok = ((plen + slen) // 4 + 1 + p["hist"]).astype(np.int32)
    ttft = rng.lognormal(np.log(350), 0.5, size=n)
    latency = np.where(ok, ttft + comp * rng.uniform(12, 30, size=n), rng.uniform(5, 60, size=n)).astype(np.float32)
    ids = pc.binary_join_element_wise(
        "ev_", pc.utf8_lpad(pc.cast(pa.array(np.arange(first_row, first_row + n, dtype=np.int64)), pa.string()), 10, "0"), ""
    )
    table = pa.table({
        "event_id": ids,
        "ts": pa.array(p["ts"], TS_TYPE),
        "account_id": arrays["account"].take(pa.array(p["acct"])),
        "key_id": arrays["key"].take(pa.array(p["key"])),
        "ip": arrays["ip"].take(pa.array(p["ip"])),
        "user_agent": _pooled(arrays, "ua", p["ua"]),
        "endpoint": _pooled(arrays, "endpoint", p["ua"]),
        "model": _pooled(arrays, "model", p["model"]),
        "system": system,
        "prompt": prompt,
        "turns": pa.array(p["turns"].astype(np.int32)),
        "tools": pa.array(p["tools"].astype(np.int32)),
        "response": resp,
        "prompt_tokens": pa.array(ptok),
        "completion_tokens": pa.array(comp),
        "max_tokens": pa.array(maxtok.astype(np.int32), mask=maxtok <= 0),
        "temperature": pa.array(p["temp"], pa.float32(), mask=np.isnan(p["temp"])),
        "status": pa.array(p["status"].astype(np.int16)),
        "latency_ms": pa.array(latency),
    })
    if "end_user" not in arrays:
        return table.cast(WRITE_SCHEMA)
    named = p["euser"] >= 0
    table = table.append_column(
        "end_user", arrays["end_user"].take(pa.array(np.where(named, p["euser"], 0), mask=~named)))
    return table.cast(WRITE_SCHEMA_END_USERS)


def _write_events(out: Path, env: Env, plan: dict[str, np.ndarray], rng: np.random.Generator,
                  per_part: int, pg: _Progress, budget: float) -> list[Path]:
    w = env.world
    arrays = dict(env.content.pools.arrays())
    arrays.update({
        "account": pa.array(w.acc.account_id, pa.string()),
        "key": pa.array(w.keys, pa.string()),
        "ip": pa.array(w.ips, pa.string()),
        "ua": pa.array(w.uas, pa.string()),
        "endpoint": pa.array(w.ua_endpoint, pa.string()),
        "model": pa.array([m.name for m in env.scenario.models], pa.string()),
        # Parquet cannot write a dictionary holding a null: index 0 (no system prompt) is masked
        "system_dict": pa.array([s or "" for s in env.content.pools.systems], pa.string()),
    })
    for name in ("response", "ua", "endpoint", "model"):
        _dedup(arrays, name)
    if w.end_users.end_user:
        arrays["end_user"] = pa.array(w.end_users.end_user, pa.string())
    schema = WRITE_SCHEMA_END_USERS if "end_user" in arrays else WRITE_SCHEMA
    d = out / "events"
    d.mkdir(parents=True, exist_ok=True)
    n = len(plan["ts"])
    files: list[Path] = []
    writer: pq.ParquetWriter | None = None
    in_part = 0
    chunk_seeds = np.random.SeedSequence(int(rng.integers(1 << 62))).spawn(max(1, -(-n // CHUNK_ROWS)))
    for ci, a in enumerate(range(0, n, CHUNK_ROWS)):
        b = min(n, a + CHUNK_ROWS)
        table = _render(env, {k: v[a:b] for k, v in plan.items()}, a, np.random.default_rng(chunk_seeds[ci]), arrays)
        if writer is None or in_part >= per_part:
            if writer is not None:
                writer.close()
            path = d / f"part-{len(files):05d}.parquet"
            files.append(path)
            writer = pq.ParquetWriter(
                path, schema, compression="zstd", use_dictionary=DICT_COLUMNS,
                dictionary_pagesize_limit=64 << 20, store_schema=False,
            )
            in_part = 0
        writer.write_table(table, row_group_size=CHUNK_ROWS)
        in_part += b - a
        pg.step(f"writing events {b:,}/{n:,}", budget * (b - a) / max(1, n))
    if writer is not None:
        writer.close()
    elif n == 0:
        path = d / "part-00000.parquet"
        pq.write_table(schema.empty_table(), path)
        files.append(path)
    return files
