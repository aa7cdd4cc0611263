"""`distillguard serve`, `distillguard keys create|revoke|list`, `distillguard export`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from distillguard._private import mask_url, write_private
from distillguard._redis import RedisOptions

#: where `serve` writes an admin token it generated (owner-only)
ADMIN_TOKEN_FILE = Path("distillguard-admin-token")

#: the default of --redis-health-check (`RedisOptions`' own)
REDIS_HEALTH_CHECK_S = RedisOptions().health_check_interval
REDIS_HEALTH_HELP = ("Seconds a Redis connection may sit idle before it is checked with a PING before its next use "
                     "(and between the verdict subscriber's PINGs); keep it below the shortest idle timeout between "
                     "this process and Redis (a load balancer's, a NAT's, Redis's own `timeout`). 0: no checks.")

#: the default of --limits-deadline (`RedisOptions`' own)
LIMITS_DEADLINE_S = RedisOptions().limits_deadline
LIMITS_DEADLINE_HELP = ("Most seconds one limits call to Redis may take, retries included (a request's counting and token "
                        "reservation together, or one batch of settlements); past it the request is served unchecked "
                        "(limits fail open during a Redis outage, counted in distillguard_limits_failed_open_total).")

DB_HELP = "Database URL: sqlite:///FILE (default sqlite:///distillguard.db) or postgresql://USER@HOST:PORT/DB."


def _quiet_libraries() -> None:
    """Keep transformers' warnings and Hugging Face progress bars out of the gateway's console."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    # Library deprecation notices say nothing an operator can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|torch)\b")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        upstream: Annotated[list[str] | None, typer.Option(help="Upstream as [MODEL_PATTERN=]SPEC; SPEC is local, fake, http(s)://HOST/v1 (OpenAI-compatible), responses+http(s)://HOST/v1 (one that also speaks the Responses API) or anthropic+https://HOST. Repeat for several. Default: the built-in local model.")] = None,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
        db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///distillguard.db",
        redis: Annotated[str | None, typer.Option(help="Redis URL to share limits between replicas (default: in memory).")] = None,
        redis_prefix: Annotated[str, typer.Option(help="Namespace of the limit counters in Redis (same for all replicas).")] = "distillguard",
        redis_health_check: Annotated[float, typer.Option(help=REDIS_HEALTH_HELP)] = REDIS_HEALTH_CHECK_S,
        limits_deadline: Annotated[float, typer.Option(help=LIMITS_DEADLINE_HELP)] = LIMITS_DEADLINE_S,
        admin_token: Annotated[str | None, typer.Option(envvar="DISTILLGUARD_ADMIN_TOKEN", help="Bearer token for /admin and /console (default: a random one, written to ./distillguard-admin-token).")] = None,
        limits: Annotated[Path | None, typer.Option(help="JSON file of limits: {\"account\": {\"requests_per_minute\": 60}, \"throttle_factor\": 0.1, ...}.")] = None,
        models: Annotated[Path | None, typer.Option(help="A folder holding the format's `models` table (models.parquet, .jsonl or .csv): release times the fleet's detector weighs, written to the database at start (added to, or replacing, the rows of the same models; PUT /admin/models replaces the whole table).")] = None,
        watermark_key_file: Annotated[Path | None, typer.Option(help="Watermark key; outputs are watermarked per account.")] = None,
        upstream_timeout: Annotated[float, typer.Option(help="Seconds to wait for the upstream.")] = 60.0,
        max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = 1_000_000,
        max_connections: Annotated[int, typer.Option(help="Open client connections; more are closed at once (docs/security.md).")] = 4096,
        max_inflight_per_key: Annotated[int, typer.Option(help="Requests one key may have in flight; more get 503.")] = 64,
        capture_interval: Annotated[float, typer.Option(help="Seconds capture waits to fill a batch.")] = 0.25,
        spool: Annotated[Path | None, typer.Option(help="Directory of the local capture spool (one per replica): every answered exchange is on disk before its answer ends, and survives a crash or a database outage.")] = None,
        spool_max_bytes: Annotated[int, typer.Option(help="Bound on the spool's undrained bytes; beyond it requests get 503.")] = 1 << 30,
        spool_sync: Annotated[str, typer.Option(help="write: an answer waits for its event's write to the spool (survives kill -9; synced every 50 ms); always: it waits for the fdatasync (survives a machine crash, slower).")] = "write",
        detect_interval: Annotated[float, typer.Option(help="Seconds between online detection updates.")] = 5.0,
        batch_rate: Annotated[float, typer.Option(help="Most batch requests per second this gateway sends upstream.")] = 20.0,
        batch_concurrency: Annotated[int, typer.Option(help="Most batch requests in flight at once.")] = 8,
        batch_via: Annotated[str, typer.Option(help="requests: run a batch's requests through the upstream's request API at --batch-rate; upstream: forward a batch to the upstream's own batch API (OpenAI Batch, Anthropic Message Batches) where it has one.")] = "requests",
        batch_poll: Annotated[float, typer.Option(help="Seconds between looks at a batch the upstream runs (--batch-via upstream).")] = 30.0,
        no_detect: Annotated[bool, typer.Option("--no-detect", help="Turn online detection off.")] = False,
        detect_config: Annotated[Path | None, typer.Option(help="Detection config TOML for online detection (default: the shipped one).")] = None,
        detector_nice: Annotated[int, typer.Option(help="How far below the gateway's CPU priority a child detector runs (os.nice increment, 0-19): on shared cores the requests get the CPU first.")] = 10,
        detect_checkpoint_interval: Annotated[float, typer.Option(help="Seconds between checkpoints of the detector's state (inprocess and child); a restarted gateway resumes from the last one plus the events captured after it.")] = 30.0,
        detector: Annotated[str, typer.Option(help="Where online detection runs: child (a detector process on this gateway's database; one leads if several replicas share it), remote (follow a separately run `distillguard detector`) or inprocess (a thread of this process).")] = "child",
        table_prefix: Annotated[str, typer.Option(help="Prefix of the gateway's tables in the database.")] = "dg_",
        log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
        fast_path: Annotated[bool, typer.Option(help="Dispatch the proxy routes before FastAPI's router (benchmarks compare both).")] = True,
        freeze_heap: Annotated[bool, typer.Option(help="After start-up, keep the objects alive then (in the gateway and its child detector) out of the garbage collector's full collections, which would otherwise stall requests (benchmarks compare both).")] = True,
    ) -> None:
        """Run the OpenAI- and Anthropic-compatible gateway (capture, limits, policy, online detection)."""
        import json
        import secrets

        from rich.console import Console

        from distillguard._errors import ConfigError
        from distillguard.enforce import LimitsConfig
        from distillguard.gateway import GatewayConfig
        from distillguard.gateway import serve as run

        console = Console(stderr=True)
        limits_cfg = LimitsConfig()
        if limits is not None:
            try:
                limits_cfg = LimitsConfig.from_dict(json.loads(limits.read_text()))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"Cannot read limits file {limits}: {exc}") from exc
        if admin_token is None:
            # written to a private file, never to stderr: service logs keep stderr
            admin_token = secrets.token_urlsafe(24)
            token_file = write_private(ADMIN_TOKEN_FILE, admin_token + "\n")
            console.print(f"admin token written to {token_file} (readable by you only; set DISTILLGUARD_ADMIN_TOKEN to choose one)", highlight=False)
        cfg = GatewayConfig(
            db=db, table_prefix=table_prefix, upstreams=tuple(upstream or ()), redis=redis, redis_prefix=redis_prefix,
            redis_options=RedisOptions(health_check_interval=redis_health_check, limits_deadline=limits_deadline),
            admin_token=admin_token, limits=limits_cfg, watermark_key_file=watermark_key_file,
            upstream_timeout=upstream_timeout, max_body_bytes=max_body_bytes,
            max_connections=max_connections, max_inflight_per_key=max_inflight_per_key,
            capture_interval=capture_interval, detect=not no_detect, detect_interval=detect_interval,
            spool_dir=spool, spool_max_bytes=spool_max_bytes, spool_sync=spool_sync,  # type: ignore[arg-type]
            detector=detector,  # type: ignore[arg-type]
            detect_config=detect_config, detect_checkpoint_interval=detect_checkpoint_interval, detector_nice=detector_nice,
            freeze_heap=freeze_heap,
            upstream_api_key=os.environ.get("DISTILLGUARD_UPSTREAM_API_KEY"),
            batch_rate=batch_rate, batch_concurrency=batch_concurrency,
            batch_via=batch_via, batch_poll=batch_poll,  # type: ignore[arg-type]
        )
        if models is not None:
            from distillguard.gateway import Store
            from distillguard.gateway._export import model_rows
            from distillguard.traffic import read_table

            store = Store(db, table_prefix)
            rows = model_rows(read_table(models, "models"))
            store.set_models(rows)
            store.close()
            console.print(f"{len(rows)} models' release times written to the database", highlight=False)
        _quiet_libraries()
        if not upstream or any(u.rsplit("=", 1)[-1] == "local" for u in upstream):
            # Trained once and cached: show it happening instead of a silent pause.
            from distillguard.localmodel import LocalModelConfig, load_default_model, model_path

            console.print(f"preparing the built-in local model (cached in {model_path(LocalModelConfig())}) ...", highlight=False, soft_wrap=True)
            load_default_model(progress=True)

        shown = mask_url(db)

        def ready() -> None:
            console.print(f"ready: distillguard gateway on http://{host}:{port}/v1 (db {shown}); create a key with: distillguard keys create ACCOUNT_ID --db {shown}", highlight=False, soft_wrap=True)

        console.print("starting the gateway ...", highlight=False, soft_wrap=True)
        run(cfg, host, port, log_level, fast_path, on_ready=ready)

    @app.command("detector")
    def detector_cmd(
        db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///distillguard.db",
        table_prefix: Annotated[str, typer.Option(help="Prefix of the gateway's tables in the database.")] = "dg_",
        config: Annotated[Path | None, typer.Option(help="Detection config TOML (default: the shipped one).")] = None,
        interval: Annotated[float, typer.Option(help="Seconds between detection steps.")] = 2.0,
        checkpoint_interval: Annotated[float, typer.Option(help="Seconds between checkpoints of the detector's state.")] = 30.0,
        redis: Annotated[str | None, typer.Option(help="Redis URL on which to announce new verdicts (replicas poll the table otherwise).")] = None,
        redis_prefix: Annotated[str, typer.Option(help="The replicas' --redis-prefix.")] = "distillguard",
        models: Annotated[Path | None, typer.Option(help="A folder holding the format's `models` table (models.parquet, .jsonl or .csv): release times to use instead of the database's (which `serve --models` and PUT /admin/models write, and which the detector otherwise reads at start and on change).")] = None,
        redis_health_check: Annotated[float, typer.Option(help=REDIS_HEALTH_HELP)] = REDIS_HEALTH_CHECK_S,
        parent_pid: Annotated[int | None, typer.Option(hidden=True, help="Stop when this process exits (a gateway's child).")] = None,
        nice: Annotated[int, typer.Option(help="Lower this process's CPU priority by this much (os.nice) at start: a detector beside a gateway on shared cores leaves them to the requests first.")] = 0,
        metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port (/metrics).")] = None,
        freeze_heap: Annotated[bool, typer.Option(help="Once warm, keep the objects alive then out of the garbage collector's full collections.")] = True,
        log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    ) -> None:
        """Run the fleet's detector: follow the shared capture, publish verdicts every replica applies.

        Start one per database (more are standbys: one leads, through a lock in the database).
        """
        import logging

        from distillguard.gateway import DetectorService, Store, run_detector

        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not 0 <= nice <= 19:
            from distillguard._errors import ConfigError

            raise ConfigError(f"--nice must be from 0 to 19 (lower priority only), got {nice}.")
        if nice:
            os.nice(nice)
        release = None
        if models is not None:
            from distillguard.traffic import read_table

            release = read_table(models, "models")
        service = DetectorService(Store(db, table_prefix), config, interval, checkpoint_interval, redis, redis_prefix,
                                  models=release,
                                  redis_options=RedisOptions(health_check_interval=redis_health_check))
        service.freeze_heap = freeze_heap
        if metrics_port is not None:
            from prometheus_client import start_http_server

            from distillguard.gateway import DetectorMetrics

            start_http_server(metrics_port, "127.0.0.1", registry=DetectorMetrics(service).registry)
        run_detector(service, parent_pid)

    keys = typer.Typer(help="Issue, list and revoke API keys.", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command("create")
    def keys_create(
        account_id: Annotated[str, typer.Argument(help="Account that owns the key (created if new).")],
        db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///distillguard.db",
        name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
        table_prefix: Annotated[str, typer.Option(help="Prefix of the gateway's tables.")] = "dg_",
    ) -> None:
        """Create an API key; the key is printed once, on the last line."""
        from distillguard.gateway import Store, issue_key

        issued = issue_key(Store(db, table_prefix), account_id, name)
        typer.echo(f"key_id {issued.key_id} for account {issued.account_id} (store the key now; it is not shown again):")
        typer.echo(issued.key)

    @keys.command("revoke")
    def keys_revoke(
        key_id: Annotated[str, typer.Argument(help="The key's id (kXXXXXXXXXXXX).")],
        db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///distillguard.db",
        table_prefix: Annotated[str, typer.Option(help="Prefix of the gateway's tables.")] = "dg_",
    ) -> None:
        """Revoke a key; running gateways stop accepting it within seconds."""
        from distillguard._errors import ConfigError
        from distillguard.gateway import Store

        if not Store(db, table_prefix).revoke_key(key_id):
            raise ConfigError(f"No active key {key_id!r} in {mask_url(db)}; list keys with 'distillguard keys list'.")
        typer.echo(f"revoked {key_id}")

    @keys.command("list")
    def keys_list(
        db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///distillguard.db",
        table_prefix: Annotated[str, typer.Option(help="Prefix of the gateway's tables.")] = "dg_",
    ) -> None:
        """List keys (ids and owners; keys themselves are never stored)."""
        from rich.console import Console
        from rich.table import Table

        from distillguard.gateway import Store

        t = Table("key_id", "account_id", "name", "revoked")
        for k in Store(db, table_prefix).keys_since(-1):
            t.add_row(k["key_id"], k["account_id"], k["name"] or "", "yes" if k["revoked_us"] else "")
        Console().print(t)

    @app.command()
    def export(
        db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///distillguard.db",
        out: Annotated[Path, typer.Option(help="Traffic log directory to write.")] = Path("log"),
        fmt: Annotated[str, typer.Option("--format", help="parquet, jsonl or jsonl.gz.")] = "parquet",
        table_prefix: Annotated[str, typer.Option(help="Prefix of the gateway's tables.")] = "dg_",
    ) -> None:
        """Write the gateway's captured traffic (events, accounts, overrides, models) as a traffic log."""
        from distillguard._errors import ConfigError
        from distillguard.gateway import export_log

        if fmt not in ("parquet", "jsonl", "jsonl.gz"):
            raise ConfigError(f"--format {fmt!r} is not one of parquet, jsonl, jsonl.gz.")
        res = export_log(db, out, fmt, table_prefix)
        typer.echo(f"wrote {res.events} events, {res.accounts} accounts, {res.overrides} overrides, {res.models} models to {res.out}")
