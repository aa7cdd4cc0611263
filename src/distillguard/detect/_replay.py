"""The offline scan: replay a log in time order through the online detector.

The log is read once in batches and reduced to per-event signals (no texts are kept; a
background thread does it while the replay works, see `_stream`), which are fed in time order
to an `OnlineDetector` one cadence window at a time. After each window the
detector decides with what it has seen so far; the first decision that throttles or blocks an
account is its `first_flagged_ts`. Nothing from after a window can change a decision made at
its end, which is exactly what a live deployment would have done.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from distillguard.detect._communities import refine_campaigns
from distillguard.detect._config import DetectConfig, load_config
from distillguard.detect._decision import THROTTLE
from distillguard.detect._endusers import SubPrincipals, carrier_ids, mark_apart
from distillguard.detect._firstrequest import FirstRequestFlags, first_request_table
from distillguard.detect._flagperiods import FlagPeriods
from distillguard.detect._interim import InterimFlags, interim_flags, interim_table
from distillguard.detect._online import OnlineDetector
from distillguard.detect._output import campaign_table, verdict_table
from distillguard.detect._registry import ScanResult
from distillguard.detect._state import IS_TEMPLATE_LINK, PAIR_CODE, PAIR_KIND, Prepared
from distillguard.detect._stream import (
    Progress,
    log_chunks,
    memory_chunks,
)

# Events folded in per chunk (whole windows). Grouping a chunk (`DetectorState.prepare`) takes
# about 2 KB an event at its height, and the replay holds one chunk being applied while the next
# is grouped; smaller chunks cost a little more work per event (the sorted codebooks are merged
# once per chunk).
CHUNK_EVENTS = 500_000


def load_overrides(*dirs: Path) -> dict[str, str]:
    """Analyst decisions (`overrides` tables) in these directories; the latest one wins."""
    from distillguard.traffic import TrafficLog

    tables = []
    for d in dirs:
        if d.is_dir() and TrafficLog(d).has("overrides"):
            t = TrafficLog(d).read("overrides")
            tables.append(pl.from_arrow(t.select([c for c in ("account_id", "action", "ts")
                                                  if c in t.column_names])))
    if not tables:
        return {}
    frame = pl.concat([t for t in tables if isinstance(t, pl.DataFrame)], how="diagonal_relaxed")
    if "ts" in frame.columns:
        frame = frame.sort("ts", nulls_last=False, maintain_order=True)
    out: dict[str, str] = {}
    for aid, action in frame.select("account_id", "action").iter_rows():
        if aid is not None and action is not None:
            out[str(aid)] = str(action)
    return out


def log_detector(log_dir: Path, config: DetectConfig, overrides: dict[str, str] | None = None,
                 partners: set[str] | None = None) -> OnlineDetector:
    """A fresh detector knowing the log's accounts and models, as a replay of it starts."""
    from distillguard.traffic import TrafficLog

    log = TrafficLog(log_dir)
    accounts = log.read("accounts") if log.has("accounts") else None
    models = log.read("models") if log.has("models") else None
    return OnlineDetector(config, accounts=accounts, models=models, overrides=overrides,
                          partners=partners)


def replay(
    log_dir: Path,
    config: DetectConfig,
    signals: pl.DataFrame | None,
    overrides: dict[str, str] | None = None,
    progress: Progress | None = None,
    partners: set[str] | None = None,
    chunk_events: int = CHUNK_EVENTS,
    first_request: FirstRequestFlags | None = None,
    sub: SubPrincipals | None = None,
    periods: FlagPeriods | None = None,
    interim: InterimFlags | None = None,
) -> tuple[OnlineDetector, np.ndarray]:
    """Feed signals window by window; return the final detector and first-flag times (us).

    `signals` are precomputed ones sorted by time, or None to compute them from the log
    while the replay goes (see `_stream`); the result is the same. `sub`, when given, is fed
    the same windows re-keyed by end user (its first-flag times are kept in it); `periods`,
    when given, records every period each account was held flagged. `interim`, when given,
    flags a cohort's new members between decisions (`_interim`).
    """
    det = log_detector(log_dir, config, overrides, partners)
    first_flag = np.full(0, -1, np.int64)
    step = int(config.replay.cadence_minutes * 60_000_000)
    if signals is None:
        source = log_chunks(log_dir, step, chunk_events, progress, end_users=sub is not None)
    else:
        if sub is not None and "end_user" not in signals.columns:
            signals = with_end_users(log_dir, signals)
        source = memory_chunks(signals, step, chunk_events) if signals.height else None
    if source is None:
        return det, first_flag
    origin = source.origin
    chunks = source.chunks

    def prepare_next() -> tuple[Prepared, Prepared | None, dict[str, np.ndarray] | None] | None:
        chunk = next(chunks, None)
        if chunk is None:
            return None
        sub_prep = None
        if sub is not None:
            users, chunk = chunk["end_user"], chunk.drop("end_user")
            sub_prep = sub.prepare(chunk, users, step, origin)
        prep = det.state.prepare(chunk, step, origin)
        young = interim.prepare(det.state, chunk, step, origin) if interim is not None else None
        return prep, sub_prep, young

    # Windows are fed in chunks of about `chunk_events` events (whole windows): memory holds
    # two chunks' grouping at a time, and the state is the same as after one batch. The next
    # chunk is grouped in a thread while this one is applied (polars and numpy release the
    # GIL; `prepare` touches nothing `apply` or the scoring reads).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="distillguard-prepare") as pool:
        ahead = pool.submit(prepare_next)
        while (got := ahead.result()) is not None:
            prep, sub_prep, young = got
            det.state.admit(prep)
            if sub is not None and sub_prep is not None:
                sub.det.state.admit(sub_prep)
            ahead = pool.submit(prepare_next)
            first_flag = replay_chunk(det, prep, step, origin, first_flag, progress, first_request,
                                      periods, interim, young)
            if sub is not None and sub_prep is not None:
                sub.first_flag = replay_chunk(sub.det, sub_prep, step, origin, sub.first_flag, None)
            del prep, sub_prep, young, got  # not held while the next chunk is grouped
    return det, first_flag


def with_end_users(log_dir: Path, signals: pl.DataFrame) -> pl.DataFrame:
    """Precomputed signals (another engine's) with their events' `end_user`, read from the
    log by `event_id` (one narrow pass, no text)."""
    from distillguard.traffic import TrafficLog

    parts = [pl.from_arrow(b) for b in TrafficLog(log_dir).batches("events", columns=["event_id", "end_user"],
                                                                   batch_size=1_000_000)]
    users = pl.concat([p for p in parts if isinstance(p, pl.DataFrame)]) if parts else None
    if users is None:
        return signals.with_columns(pl.lit(None, pl.String).alias("end_user"))
    return signals.join(users.unique("event_id", keep="first"), on="event_id", how="left", maintain_order="left")


def replay_chunk(det: OnlineDetector, prep: Prepared, step: int, origin: int,
                  first_flag: np.ndarray, progress: Progress | None,
                  first_request: FirstRequestFlags | None = None,
                  periods: FlagPeriods | None = None,
                  interim: InterimFlags | None = None,
                  young: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Apply a prepared chunk window by window, deciding after each; first-flag times (the
    flag periods into `periods`, when given; `interim` with the chunk's `young` rows: a
    cohort's new members flagged between decisions, see `_interim`)."""
    for w in prep.windows.tolist():
        end = origin + (w + 1) * step
        if first_request is not None:
            first_request.window(prep.new_pairs.window(w), prep.accounts.window(w))
        if interim is not None and young is not None:
            interim.window(det.state, InterimFlags.window_rows(young, w))
        det.apply_window(prep, w, end)
        a = det.assess(with_pairs=False)
        if first_request is not None:
            first_request.decided(det.state, a.action, a.harvest,
                                  (det.core.links.by_key, det.core.links.by_acct))
        m = det.state.size
        if len(first_flag) < m:
            first_flag = np.concatenate(
                [first_flag, np.full(m - len(first_flag), -1, np.int64)]
            )
        flagged = a.action >= THROTTLE
        newly = flagged & (first_flag[:m] < 0)
        first_flag[:m][newly] = end
        if interim is not None:
            interim.confirm(a.action, first_flag)
        if periods is not None:
            # a confirmed interim flag moved this window's first flags earlier
            this_window = first_flag[:m] > end - step
            periods.decided(flagged, end, np.where(this_window, first_flag[:m], end))
        if interim is not None:
            interim.decided(det.state, a.action, *interim_flags(det))
        if progress:
            progress("replay", det.state.events_seen)
    return first_flag


def _example_lookup(log_dir: Path, event_ids: list[str]) -> Callable[[str], str]:
    """Fetch the prompts of a few events by id, for quoting templates in the evidence."""
    from distillguard.traffic import TrafficLog

    if not event_ids:
        return lambda _eid: ""
    con = duckdb.connect()
    TrafficLog(log_dir).duckdb_view(con, "events", "events")
    wanted = pa.table({"event_id": pa.array(sorted(set(event_ids)), pa.string())})
    con.register("wanted", wanted)
    rows = con.execute(
        "SELECT e.event_id, coalesce(e.prompt, '') FROM events e JOIN wanted USING (event_id)"
    ).fetchall()
    found = {str(k): str(v).replace("\n", " ") for k, v in rows}
    return lambda eid: found.get(eid, "")


def graph_detector(log_dir: Path, config: Path | None = None,
                   progress: Progress | None = None,
                   decisions_dir: Path | None = None,
                   indicators: Path | None = None) -> ScanResult:
    """The default detector: harvest profiles plus a coordination graph, replayed in time."""
    return finish_scan(log_dir, config, None, progress, decisions_dir, indicators)


def partner_matches(log_dir: Path, indicators: Path | None) -> set[str]:
    """Accounts of the log that match partners' STIX indicators (known before the scan)."""
    if indicators is None:
        return set()
    from distillguard.share import load_indicators

    matched = load_indicators(indicators).match_accounts(log_dir)
    return {str(a) for a in matched.column("account_id").to_pylist()}


def finish_scan(log_dir: Path, config: Path | None, signals: pl.DataFrame | None,
                progress: Progress | None = None,
                decisions_dir: Path | None = None,
                indicators: Path | None = None) -> ScanResult:
    """Replay signals (precomputed, or None: from the log as it goes) and build the scan's
    tables (shared by every engine)."""
    cfg = load_config(config)
    overrides = load_overrides(log_dir, *([decisions_dir] if decisions_dir else []))
    partners = partner_matches(log_dir, indicators)
    gate = FirstRequestFlags(cfg.first_request) if cfg.first_request.enabled else None
    sub = SubPrincipals.of_log(log_dir, cfg, overrides, partners)
    periods = FlagPeriods()
    interim = InterimFlags.of(cfg)
    det, first_flag = replay(log_dir, cfg, signals, overrides, progress, partners=partners,
                             first_request=gate, sub=sub, periods=periods, interim=interim)
    return scan_tables(log_dir, cfg, det, first_flag, overrides, partners, gate, sub,
                       periods=periods, interim=interim)


def scan_tables(log_dir: Path, cfg: DetectConfig, det: OnlineDetector, first_flag: np.ndarray,
                overrides: dict[str, str], partners: set[str],
                gate: FirstRequestFlags | None, sub: SubPrincipals | None = None,
                periods: FlagPeriods | None = None,
                interim: InterimFlags | None = None) -> ScanResult:
    """The scan's tables from a detector replayed to the log's end (every engine's last step);
    `sub`, when given, holds the end users replayed beside it, `periods` the flag periods
    recorded (table `flag_periods`)."""
    a = refine_campaigns(det.assess(), cfg.links.min_accounts)
    state = det.state
    # The templates quoted in the evidence: one example each (a key has millions of pairs).
    pairs = a.suspicious_pairs
    is_template = IS_TEMPLATE_LINK[pairs[:, PAIR_KIND]]
    carried = a.cells.carrier_key[a.cells.carrier_key >= 0]  # a carrier quotes its own key
    codes = np.union1d(pairs[is_template, PAIR_CODE],
                       state.sid_code[np.concatenate([a.cells.key, carried])])
    ids = [state.key_label[int(code)] for code in codes]
    example = _example_lookup(log_dir, ids)
    verdicts = verdict_table(state, a, cfg, first_flag, example)
    campaigns = campaign_table(state, a, verdicts)
    meta = pa.table({"key": ["detector", "config_version"],
                     "value": ["graph", cfg.version]})
    tables = {"scan_info": meta, "rarity": a.rarity.table(state.ids)}
    if gate is not None:
        tables["first_request_flags"] = first_request_table(state, gate)
    if periods is not None:
        tables["flag_periods"] = periods.table(state.ids)
    if interim is not None:
        tables["interim_flags"] = interim_table(state, interim)
    if sub is not None:
        tables["end_user_verdicts"], apart = sub.judge(cfg, carrier_ids(state, a))
        verdicts = mark_apart(verdicts, apart)
    return ScanResult(verdicts=verdicts, campaigns=campaigns, tables=tables)
