"""Test support: a mock upstream thread, a uvicorn server thread, gateway factories, the shipped
detect config with the changes the end-to-end tests need."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from distillguard._redis import RedisOptions
from distillguard.enforce import LimitsConfig, LimitSet
from distillguard.gateway import (
    AnthropicUpstream,
    FakeUpstream,
    Gateway,
    GatewayConfig,
    OpenAIUpstream,
    Router,
    create_app,
    issue_key,
)
from distillguard.gateway._serve import uvicorn_config

ADMIN = "test-admin-token-0123456789"
SHORT_THROTTLE_MINUTES = 0.034  # a throttle holds about 2 s before the block (15 min shipped)
#: Redis options for replicas under a concurrent burst (as tests/enforce/support.py's): the tests
#: check budgets are exact when Redis answers, and on a shared CI machine a burst can keep the
#: event loop busy past the production timeouts, which would retry calls that ran (charging them
#: twice) or fail limits open. The deadline's
#: own behaviour is tested in test_redis_idle.py.
BURST_OPTIONS = RedisOptions(socket_timeout=5.0, socket_connect_timeout=5.0, limits_deadline=30.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An asyncio loop in a thread, serving an aiohttp app (the mock upstream)."""

    def __init__(self, app: Any, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.app, self.port = app, port
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        self.runner = runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.1)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(10), "mock upstream did not start"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class ServerThread:
    """A real uvicorn server running the app in a thread."""

    def __init__(self, app: Any, port: int) -> None:
        # the settings `distillguard serve` uses (its coalescing HTTP protocol included)
        cfg = uvicorn_config(app, "127.0.0.1", port, "warning", lifespan="on")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class Running:
    url: str
    gateway: Gateway
    key: str
    key_id: str
    account_id: str
    gateway_app: Any = None

    def new_key(self, account_id: str) -> str:
        return issue_key(self.gateway.store, account_id).key

    def events(self) -> list[dict[str, Any]]:
        return captured_events(self.gateway)


CAPTURE_DRAIN_S = 5.0  # how long `captured_events` waits for the capture queue to drain


def captured_events(gw: Gateway) -> list[dict[str, Any]]:
    """Everything `gw` captured so far (waits for the capture queue to drain)."""
    deadline = time.monotonic() + CAPTURE_DRAIN_S
    while gw.capture.queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)
    return [e for rows in gw.store.iter_events() for e in rows]


def make_gateway(db: str, mock_url: str, prefix: str = "dg_", **kw: Any) -> Gateway:
    kw.setdefault("limits", LimitsConfig(key=LimitSet(100_000, 1_000_000, None, None), account=LimitSet(100_000, 1_000_000, None, None)))
    kw.setdefault("detect", False)
    cfg = GatewayConfig(db=db, table_prefix=prefix, admin_token=ADMIN, capture_interval=0.02, refresh_interval=0.2, upstream_timeout=1.0, **kw)
    router = Router()
    router.add("fake-*", FakeUpstream(reasoning=True))
    router.add("claude-*", AnthropicUpstream(mock_url.removesuffix("/v1"), timeout=1.0))
    openai_up = OpenAIUpstream(mock_url, timeout=1.0)
    router.add("gpt-*", openai_up)
    router.add("mock-*", openai_up)
    return Gateway(cfg, router=router)


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, deadline: float, failure: Callable[[], str]) -> None:
    """Poll the gateway process's `url/healthz` until it answers 200; fail with `failure()` once
    the process has exited or the monotonic `deadline` has passed."""
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(failure())
        time.sleep(0.1)


def detect_config_file(tmp_path: Path, *, short_throttle: bool = True, block_on_match: bool = False,
                       cadence_minutes: float | None = None) -> Path:
    """The shipped detect_config.toml written to `tmp_path/detect.toml`, changed so a test sees
    the whole escalation: a short throttle before the block; with `block_on_match`, every
    match blocks at once (the shipped default throttles); with `cadence_minutes`, another cadence."""
    text = resources.files("distillguard.detect").joinpath("detect_config.toml").read_text()
    if short_throttle:
        text = re.sub(r"block_after_throttle_minutes = [0-9.]+",
                      f"block_after_throttle_minutes = {SHORT_THROTTLE_MINUTES}", text)
    if block_on_match:
        text = re.sub(r'action = "throttle"', 'action = "block"', text)
    if cadence_minutes is not None:
        text = re.sub(r"cadence_minutes = [0-9.]+", f"cadence_minutes = {cadence_minutes!r}", text)
    path = tmp_path / "detect.toml"
    path.write_text(text)
    return path


def start_gateway(cfg: GatewayConfig, upstream: FakeUpstream | None = None) -> tuple[ServerThread, Gateway]:
    """A gateway with every model routed to `upstream` (a plain FakeUpstream by default), served
    by a started uvicorn thread on a free port."""
    router = Router()
    router.add("*", upstream if upstream is not None else FakeUpstream())
    gw = Gateway(cfg, router=router)
    srv = ServerThread(create_app(gateway=gw), free_port())
    srv.start()
    return srv, gw


@contextmanager
def serving_gateway(cfg: GatewayConfig, upstream: FakeUpstream | None = None) -> Iterator[tuple[str, Gateway]]:
    """(base URL, gateway) of `start_gateway`'s server for the block; stopped after it."""
    srv, gw = start_gateway(cfg, upstream)
    try:
        yield f"http://127.0.0.1:{srv.server.config.port}", gw
    finally:
        srv.stop()


@contextmanager
def serving_account(gw: Gateway, account_id: str = "acme") -> Iterator[Running]:
    """`gw` served by a started uvicorn thread on a free port, with one key issued to
    `account_id`, for the block; stopped after it."""
    issued = issue_key(gw.store, account_id)
    app = create_app(gateway=gw)
    srv = ServerThread(app, free_port())
    srv.start()
    try:
        yield Running(f"http://127.0.0.1:{srv.server.config.port}", gw, issued.key, issued.key_id,
                      account_id, app)
    finally:
        srv.stop()


@contextmanager
def keyed_client(cfg: GatewayConfig, account: str, timeout: float = 5.0) -> Iterator[tuple[httpx.Client, Gateway]]:
    """A client of `serving_gateway(cfg)` carrying a key issued to `account`, and the gateway."""
    with serving_gateway(cfg) as (base, gw):
        key = issue_key(gw.store, account).key
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=timeout) as c:
            yield c, gw


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus text exposition read with prometheus-client's parser: samples by (name,
    sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def scrape(c: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's `/metrics` (`metric_samples`)."""
    return metric_samples(c.get("/metrics").text)


def batch_jsonl(model: str, prompts: list[str], id_format: str = "r{}", **extra: Any) -> bytes:
    """An OpenAI batch input file: one chat request per prompt, `custom_id` from `id_format`."""
    import json

    lines = [{"custom_id": id_format.format(i), "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": model, "messages": [{"role": "user", "content": p}], **extra}} for i, p in enumerate(prompts)]
    return "\n".join(json.dumps(x) for x in lines).encode()


def submit_batch(c: Any, data: bytes) -> Any:
    """Upload `data` and create a chat-completions batch of it with the openai client `c`."""
    f = c.files.create(file=("batch.jsonl", data), purpose="batch")
    return c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")


def wait_for(get: Any, done: Any, timeout: float = 20.0) -> Any:
    """Poll `get()` until `done` holds for what it returns; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if done(got):
            return got
        assert time.monotonic() < deadline, f"not done after {timeout:g} s: {got}"
        time.sleep(0.05)
