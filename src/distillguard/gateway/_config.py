"""Gateway configuration as one typed, validated object, and upstream specs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from distillguard._errors import ConfigError
from distillguard._redis import RedisOptions
from distillguard.enforce import DegradeConfig, LimitsConfig

DEFAULT_DB = "sqlite:///distillguard.db"


@dataclass(frozen=True)
class GatewayConfig:
    """Everything `distillguard serve` can set.

    Args:
        db: SQLite or PostgreSQL URL for capture, accounts and keys.
        upstreams: upstream specs, `[MODEL_PATTERN=]SPEC` where SPEC is `local`, `fake`,
            an OpenAI-compatible base URL (`http://host:8000/v1`, optionally `openai+` prefixed)
            or `anthropic+https://api.anthropic.com`. Empty: the local model (or `fake` if
            the local model is not available).
        redis: Redis URL for limits shared between replicas; None keeps them in memory.
        redis_options: how every Redis client (limits, token ledger, verdict channel, and a
            `child` detector's announcer) connects, health-checks idle connections, times out
            and retries; see `distillguard._redis.RedisOptions` for the defaults.
        admin_token: bearer token of the admin API; None disables the admin API.
        max_body_bytes: larger request bodies get 413.
        max_inflight_per_key: requests one key may have in flight; more get 503 at once, so
            one key cannot hold every upstream connection.
        upstream_acquire_timeout: seconds a request waits for an upstream connection before 503.
        login_failures_per_minute: failed logins (unknown, wrong or revoked keys) one client
            address may make per minute; beyond, 429 without a look-up.
        key_lookup_threads: threads for key look-ups in the store (apart from capture's).
        max_connections: open client connections; more are closed at once.
        header_timeout: seconds a client has to send a request's headers (and an idle new
            connection to start one).
        max_header_bytes: largest request line plus headers; more gets 431.
        body_timeout: seconds a client has to send a whole request body; more gets 408.
        spool_dir: directory of the local capture spool (one per replica; see `_spool.py`);
            None writes events from an in-memory queue, which a crash loses.
        spool_max_bytes: bound on the spool's undrained bytes; beyond it requests get 503.
        spool_sync: `write` (an answer waits for its event's write; synced every 50 ms) or
            `always` (an answer waits for the fdatasync); see `_spool.py`.
        detector: where online detection runs when `detect` is on: `inprocess` (a thread of
            this process), `child` (a `distillguard detector` child
            process on the shared capture, followed like a remote one) or `remote` (a
            separately run `distillguard detector`; this replica follows its verdicts).
            Every mode follows the capture in the database and resumes after a restart from
            its last checkpoint plus the events captured after it.
        detect_checkpoint_interval: seconds between checkpoints of the detector's state
            (`inprocess` and `child`; a clean stop checkpoints too).
        detector_nice: how far below the gateway's CPU priority a `child` detector runs (an
            `os.nice` increment): on a machine whose cores it shares with the gateway, the
            request loop gets the CPU first and the detector what is left (it catches up when
            traffic lulls); 0 runs both alike.
        freeze_heap: after start-up, move the objects alive then out of the garbage
            collector's reach (`distillguard._heap.freeze_heap`), in `serve` and in its `child`
            detector: full collections then skip the start-up heap, which otherwise stalls
            the request loop for a tenth of a second or more.
        batch_rate: most batch requests per second this gateway sends upstream (all batches).
        batch_concurrency: most batch requests in flight at once.
        batch_max_bytes: largest batch file or Message Batches body.
        batch_max_requests: most requests in one batch.
        batch_lease: seconds a replica holds a batch it runs before another may take it over.
        batch_via: how a batch runs: `requests` (each request through the upstream's request
            API, paced by `batch_rate`) or `upstream` (the whole batch through the upstream's
            own batch API where all its requests go to one OpenAI or Anthropic upstream that
            speaks its API; others still run through the request API).
        batch_poll: seconds between looks at a batch the upstream runs.
    """

    db: str = DEFAULT_DB
    table_prefix: str = "dg_"
    upstreams: tuple[str, ...] = ()
    upstream_timeout: float = 60.0
    upstream_api_key: str | None = None
    redis: str | None = None
    redis_prefix: str = "distillguard"
    redis_options: RedisOptions = field(default_factory=RedisOptions)
    admin_token: str | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    max_body_bytes: int = 1_000_000
    max_inflight_per_key: int = 64
    upstream_acquire_timeout: float = 10.0
    login_failures_per_minute: int = 60
    key_lookup_threads: int = 2
    max_connections: int = 4096
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_timeout: float = 30.0
    keep_responses: bool = True
    capture_queue: int = 100_000
    capture_batch: int = 2000
    capture_interval: float = 0.25
    spool_dir: Path | None = None
    spool_max_bytes: int = 1 << 30
    spool_sync: Literal["write", "always"] = "write"
    refresh_interval: float = 2.0
    detect: bool = True
    detector: Literal["inprocess", "child", "remote"] = "inprocess"
    detect_interval: float = 5.0
    detect_config: Path | None = None
    detect_checkpoint_interval: float = 30.0
    detector_nice: int = 10
    freeze_heap: bool = True
    watermark_key_file: Path | None = None
    batch_rate: float = 20.0
    batch_concurrency: int = 8
    batch_max_bytes: int = 100_000_000
    batch_max_requests: int = 50_000
    batch_lease: float = 30.0
    batch_via: Literal["requests", "upstream"] = "requests"
    batch_poll: float = 30.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("upstream_timeout", "capture_interval", "refresh_interval", "detect_interval", "detect_checkpoint_interval",
                     "upstream_acquire_timeout", "header_timeout", "body_timeout", "batch_lease", "batch_poll"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or v < 0:
                problems.append(f"{name} must be a non-negative number of seconds, got {v!r}")
        for name in ("max_body_bytes", "capture_queue", "capture_batch", "max_inflight_per_key",
                     "login_failures_per_minute", "key_lookup_threads", "max_connections", "max_header_bytes",
                     "spool_max_bytes", "batch_concurrency", "batch_max_bytes", "batch_max_requests"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be a positive integer, got {v!r}")
        if self.spool_sync not in ("write", "always"):
            problems.append(f"spool_sync must be write or always, got {self.spool_sync!r}")
        if isinstance(self.detector_nice, bool) or not isinstance(self.detector_nice, int) or not 0 <= self.detector_nice <= 19:
            problems.append(f"detector_nice must be an integer from 0 to 19, got {self.detector_nice!r}")
        if self.detector not in ("inprocess", "child", "remote"):
            problems.append(f"detector must be inprocess, child or remote, got {self.detector!r}")
        if self.batch_via not in ("requests", "upstream"):
            problems.append(f"batch_via must be requests or upstream, got {self.batch_via!r}")
        if isinstance(self.batch_rate, bool) or not isinstance(self.batch_rate, int | float) or self.batch_rate <= 0:
            problems.append(f"batch_rate must be a positive number of requests per second, got {self.batch_rate!r}")
        if self.admin_token is not None and len(self.admin_token) < 16:
            problems.append("admin_token must be at least 16 characters long")
        if self.watermark_key_file is not None and not Path(self.watermark_key_file).exists():
            problems.append(f"watermark key file {self.watermark_key_file} does not exist")
        for spec in self.upstreams:
            try:
                split_spec(spec)
            except ConfigError as exc:
                problems.append(str(exc).rstrip("."))
        if problems:
            raise ConfigError("Invalid gateway settings: " + "; ".join(problems) + ".")


def split_spec(spec: str) -> tuple[str, str, str]:
    """`[PATTERN=]SPEC` -> (pattern, kind, url); kind is openai, responses, anthropic, local or fake."""
    pattern = "*"
    head, sep, tail = spec.partition("=")
    if sep and "/" not in head and head:
        pattern, spec = head, tail
    s = spec.strip()
    if s in ("local", "fake", "mock"):
        return pattern, "fake" if s == "mock" else s, ""
    kind = "openai"
    for prefix in ("openai+", "anthropic+", "responses+"):
        if s.startswith(prefix):
            s, kind = s[len(prefix):], prefix[:-1]
    if not s.startswith(("http://", "https://")):
        raise ConfigError(
            f"Upstream {spec!r} is not understood; use local, fake, http(s)://HOST/v1 "
            "(OpenAI-compatible), responses+http(s)://HOST/v1 (OpenAI-compatible with the Responses API), "
            "anthropic+https://HOST, optionally prefixed by MODEL_PATTERN=."
        )
    return pattern, kind, s
