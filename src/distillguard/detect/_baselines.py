"""Two reference detectors every real detector is compared with.

- `volume`: what a plain per-account rate limit does. An account is throttled at the first
  request that goes over `per_day` requests in one UTC calendar day; `first_flagged_ts` is
  the time of that request.
- `random`: flags a seeded random `share` of the accounts, each from its first request (a
  coin tossed once per account when it first shows up), so any real detector must beat it.

Both are vectorised in DuckDB; Python only touches one row per account.
Configuration (optional TOML file; a `[volume]` / `[random]` table or top-level keys)::

    [volume]
    per_day = 200

    [random]
    share = 0.05
    seed = 0
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distillguard._errors import ConfigError
from distillguard._logsql import register_view
from distillguard.detect._registry import ScanResult
from distillguard.traffic import CAMPAIGNS, conform


@dataclass(frozen=True)
class VolumeConfig:
    """The `volume` baseline's one knob: requests per account per UTC day before throttling."""

    per_day: int = 200

    def __post_init__(self) -> None:
        if isinstance(self.per_day, bool) or not isinstance(self.per_day, int) or self.per_day < 1:
            raise ConfigError(
                f"volume.per_day must be a whole number of requests >= 1, not {self.per_day!r}."
            )


@dataclass(frozen=True)
class RandomConfig:
    """The `random` baseline: the share of accounts flagged and the seed that picks them."""

    share: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if (
            isinstance(self.share, bool)
            or not isinstance(self.share, int | float)
            or not (0.0 <= float(self.share) <= 1.0)
        ):
            problems.append(f"random.share must be a number in [0, 1], not {self.share!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            problems.append(f"random.seed must be a whole number, not {self.seed!r}")
        if problems:
            raise ConfigError("; ".join(problems) + ".")


def _load_section(config: Path | None, section: str) -> dict[str, Any]:
    if config is None:
        return {}
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read the detector config {config}: {exc}.") from exc
    body = data.get(section, {k: v for k, v in data.items() if not isinstance(v, dict)})
    if not isinstance(body, dict):
        raise ConfigError(f"In {config}, [{section}] must be a table of settings.")
    return body


def _build(cls: type[Any], config: Path | None, section: str) -> Any:
    body = _load_section(config, section)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ConfigError(
            f"Unknown {section} setting(s) {', '.join(unknown)} in {config}; "
            f"known: {', '.join(sorted(known))}."
        )
    return cls(**body)


def _connect() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _empty_campaigns() -> pa.Table:
    # Baselines judge accounts one by one; claiming a campaign they never assembled would not
    # be honest, so the table is empty but has the format's schema (and the evidence extra).
    empty = CAMPAIGNS.schema.empty_table()
    return empty.append_column("evidence", pa.array([], pa.string()))


def volume_verdicts(log_dir: Path, cfg: VolumeConfig) -> pa.Table:
    """Per-account verdicts of a plain per-day rate limit (see the module docstring)."""
    con = _connect()
    try:
        view = register_view(con, log_dir, "events", "__dg_events")
        limit = cfg.per_day
        sql = f"""
        WITH e AS (
            SELECT account_id, ts, CAST(ts AS DATE) AS day FROM "{view}"
        ),
        daily AS (
            SELECT account_id, day, count(*) AS n FROM e GROUP BY account_id, day
        ),
        over AS (
            SELECT account_id, day FROM daily WHERE n > $lim
        ),
        crossing AS (
            SELECT account_id, day, list_sort(list(ts))[$lim + 1] AS cross_ts
            FROM e SEMI JOIN over USING (account_id, day)
            GROUP BY account_id, day
        ),
        acc AS (
            SELECT d.account_id,
                   sum(d.n)::BIGINT AS events,
                   max(d.n)::BIGINT AS max_daily,
                   arg_max(d.day, d.n) AS busiest_day,
                   count(c.cross_ts)::BIGINT AS days_over,
                   min(c.cross_ts) AS first_flagged_ts,
                   arg_min(d.day, c.cross_ts) AS first_over_day,
                   arg_min(d.n, c.cross_ts)::BIGINT AS first_over_n
            FROM daily d LEFT JOIN crossing c USING (account_id, day)
            GROUP BY d.account_id
        )
        SELECT account_id,
               max_daily::DOUBLE / (max_daily + $lim) AS score,
               CASE WHEN first_flagged_ts IS NULL THEN 'allow' ELSE 'throttle' END AS action,
               NULL::VARCHAR AS campaign_id,
               first_flagged_ts,
               CASE WHEN first_flagged_ts IS NULL THEN
                   to_json([format('at most {{}} requests on any UTC day (busiest {{}}), within the limit of {{}} per day',
                                   max_daily, busiest_day, $lim)])
               ELSE to_json(list_concat(
                   [format('sent {{}} requests on {{}} (UTC), above the limit of {{}} per day; throttled at request {{}} at {{}} UTC',
                           first_over_n, first_over_day, $lim, $lim + 1, strftime(first_flagged_ts, '%H:%M:%S'))],
                   CASE WHEN days_over > 1 THEN
                       [format('over the limit on {{}} days; busiest day {{}} with {{}} requests',
                               days_over, busiest_day, max_daily)]
                   ELSE []::VARCHAR[] END))
               END::VARCHAR AS reasons,
               json_object('detector', 'volume', 'limit_per_day', $lim, 'events', events,
                           'max_daily', max_daily, 'busiest_day', busiest_day::VARCHAR,
                           'days_over_limit', days_over)::VARCHAR AS evidence
        FROM acc
        ORDER BY account_id
        """
        table = con.sql(sql, params={"lim": limit}).to_arrow_table()
    finally:
        con.close()
    return conform("verdicts", table)


def random_verdicts(log_dir: Path, cfg: RandomConfig) -> pa.Table:
    """Per-account verdicts that flag a seeded random share of accounts (module docstring)."""
    con = _connect()
    try:
        view = register_view(con, log_dir, "events", "__dg_events")
        acc = con.sql(
            f'SELECT account_id, min(ts) AS first_ts, count(*)::BIGINT AS events FROM "{view}" '
            "GROUP BY account_id ORDER BY account_id"
        ).to_arrow_table()
    finally:
        con.close()
    n = acc.num_rows
    rng = np.random.default_rng(cfg.seed)
    u = rng.random(n)
    k = int(round(cfg.share * n))
    flagged = np.zeros(n, dtype=bool)
    # Exactly round(share * n) accounts: the k largest draws.
    if k:
        flagged[np.argsort(-u, kind="stable")[:k]] = True
    first_ts = acc.column("first_ts")
    null_ts = pa.nulls(n, first_ts.type)
    first_flagged = pc.if_else(pa.array(flagged), first_ts, null_ts)
    reason = json.dumps([f"picked at random (seed {cfg.seed}, share {cfg.share:g} of accounts)"])
    quiet = json.dumps([f"not picked at random (seed {cfg.seed}, share {cfg.share:g})"])
    evidence = json.dumps({"detector": "random", "seed": cfg.seed, "share": cfg.share})
    table = pa.table(
        {
            "account_id": acc.column("account_id"),
            "score": pa.array(u, pa.float64()),
            "action": pa.array(np.where(flagged, "block", "allow").tolist(), pa.string()),
            "campaign_id": pa.nulls(n, pa.string()),
            "first_flagged_ts": first_flagged,
            "reasons": pa.array([reason if f else quiet for f in flagged], pa.string()),
            "evidence": pa.array([evidence] * n, pa.string()),
        }
    )
    return conform("verdicts", table)


def volume_detector(log_dir: Path, config: Path | None) -> ScanResult:
    """The `volume` detector for the registry."""
    cfg = _build(VolumeConfig, config, "volume")
    return ScanResult(verdicts=volume_verdicts(log_dir, cfg), campaigns=_empty_campaigns())


def random_detector(log_dir: Path, config: Path | None) -> ScanResult:
    """The `random` detector for the registry."""
    cfg = _build(RandomConfig, config, "random")
    return ScanResult(verdicts=random_verdicts(log_dir, cfg), campaigns=_empty_campaigns())
