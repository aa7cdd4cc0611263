"""`distillguard serve` says "ready" only once it accepts connections, and nothing else leaks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT_S = 60  # a cold interpreter imports FastAPI, pyarrow and duckdb first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ready_means_accepting_connections(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DISTILLGUARD_ADMIN_TOKEN": "ready-admin-token-0123456789"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "distillguard", "serve", "--upstream", "fake", "--port", str(port),
         "--db", f"sqlite:///{tmp_path / 'ready.db'}", "--no-detect", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready"):
                # No retry: the very first connection after "ready" must be answered.
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
                break
        else:
            raise AssertionError("no 'ready' line in time:\n" + "".join(lines))
        assert any(line.startswith("ready") for line in lines), "".join(lines)
        assert f"http://127.0.0.1:{port}/v1" in lines[-1]
        text = "".join(lines)
        assert "Traceback" not in text and "Warning" not in text
    finally:
        proc.kill()
        proc.wait(10)
