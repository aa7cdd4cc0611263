"""Export the gateway's store as a traffic log (events, accounts, overrides, models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard.gateway._store import Store


@dataclass(frozen=True)
class ExportResult:
    out: Path
    events: int
    accounts: int
    overrides: int
    models: int = 0


def accounts_table(store: Store) -> Any:
    """The store's accounts as an ACCOUNTS table of the traffic log format."""
    import pyarrow as pa

    from distillguard.traffic import TS

    accounts = store.list_accounts()
    acc: dict[str, Any] = {
        "account_id": pa.array([a["account_id"] for a in accounts], pa.string()),
        "created_at": pa.array([a["created_us"] for a in accounts], pa.int64()).cast(TS),
    }
    for col in ("signup_channel", "email_domain", "payment_fingerprint", "country"):
        acc[col] = pa.array([a[col] for a in accounts], pa.string())
    acc["verified"] = pa.array([a["verified"] for a in accounts], pa.bool_())
    return pa.table(acc)


def overrides_table(store: Store) -> Any:
    """The store's overrides as an OVERRIDES table of the traffic log format, oldest first."""
    import pyarrow as pa

    from distillguard.traffic import TS

    ov = store.overrides_since(0)
    return pa.table({
        "account_id": pa.array([o["account_id"] for o in ov], pa.string()),
        "action": pa.array([o["action"] for o in ov], pa.string()),
        "ts": pa.array([o["ts_us"] for o in ov], pa.int64()).cast(TS),
        "by": pa.array([o["by"] for o in ov], pa.string()),
        "note": pa.array([o["note"] for o in ov], pa.string()),
    })


def models_table(store: Store) -> Any:
    """The store's models as a MODELS table of the traffic log format (release times)."""
    import pyarrow as pa

    from distillguard.traffic import TS

    rows = store.list_models()
    return pa.table({
        "model": pa.array([m["model"] for m in rows], pa.string()),
        "released_at": pa.array([m["released_us"] for m in rows], pa.int64()).cast(TS),
    })


def model_rows(table: Any) -> list[tuple[str, int | None]]:
    """(model, released µs or None) rows of a MODELS table of the traffic log format, for
    `Store.set_models`."""
    import pyarrow as pa

    from distillguard.traffic import TS

    released = table.column("released_at").cast(TS).cast(pa.int64()).to_pylist() if "released_at" in table.column_names \
        else [None] * table.num_rows
    return [(str(m), r) for m, r in zip(table.column("model").to_pylist(), released, strict=True)]


def export_log(db: str | Store, out: str | Path, fmt: str = "parquet", prefix: str = "dg_", batch: int = 50_000) -> ExportResult:
    """Write the captured events, the accounts, the overrides and the models (when the store
    holds any) of `db` to the log directory `out`.

    Args:
        db: database URL or an open `Store`.
        out: log directory (created).
        fmt: parquet, jsonl or jsonl.gz.
        prefix: the store's table prefix.
        batch: events read per query.

    Returns:
        Row counts written per table.
    """

    from distillguard.gateway._online import events_table
    from distillguard.traffic import LogWriter

    store = db if isinstance(db, Store) else Store(db, prefix)
    n_events = 0
    with LogWriter(out, fmt=fmt) as writer:  # type: ignore[arg-type]
        for rows, _seq in store.event_tuples_since(0, batch):
            writer.write("events", events_table(rows))
            n_events += len(rows)
        if n_events == 0:
            writer.write("events", events_table([]))
        accounts = accounts_table(store)
        writer.write("accounts", accounts)
        ov = overrides_table(store)
        writer.write("overrides", ov)
        models = models_table(store)
        if models.num_rows:
            writer.write("models", models)
    if not isinstance(db, Store):
        store.close()
    return ExportResult(Path(out), n_events, accounts.num_rows, ov.num_rows, models.num_rows)
