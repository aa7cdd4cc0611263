"""Secrets and captured traffic stay with their owner: private files written atomically,
credentials masked in what the gateway prints, a generated admin token never on stderr."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from distillguard._private import mask_url, write_private
from distillguard.gateway import Store, issue_key

from ..support import free_port


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_sqlite_database_and_wal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files 0644 unless created otherwise
    try:
        store = Store(f"sqlite:///{tmp_path / 'private.db'}")
        issue_key(store, "someone")  # a write: the -wal and -shm files exist now
        made = [p for p in tmp_path.iterdir() if p.name.startswith("private.db")]
        assert {p.name for p in made} >= {"private.db", "private.db-wal"}
        assert {p.name: _mode(p) for p in made} == dict.fromkeys((p.name for p in made), 0o600)
        store.close()
    finally:
        os.umask(old)


def test_key_files_are_rewritten_private_and_whole(tmp_path: Path) -> None:
    from distillguard.watermark import WatermarkKey

    path = tmp_path / "wm.key"
    path.write_text("an old key file\n")
    path.chmod(0o644)
    key = WatermarkKey.generate()
    key.save(path)
    assert _mode(path) == 0o600, "rewriting a 0644 key file must make it private"
    assert WatermarkKey.load(path).to_json() == key.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["wm.key"], "no temporary file is left behind"
    # `watermark rotate` rewrites the file in place through save()
    path.chmod(0o644)
    from typer.testing import CliRunner

    from distillguard.cli import app

    r = CliRunner().invoke(app, ["watermark", "rotate", str(path)])
    assert r.exit_code == 0, r.output
    assert _mode(path) == 0o600 and len(WatermarkKey.load(path).versions) == 2


def test_write_private_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    path = write_private(tmp_path / "secret", "version 1\n")

    # a write that fails half-way (a lone surrogate cannot be encoded): the old file stays
    with pytest.raises(UnicodeEncodeError):
        write_private(path, "version 2 " * 1000 + "\ud800")
    assert path.read_text() == "version 1\n" and [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_mask_url() -> None:
    assert mask_url("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert mask_url("postgresql://app@db/x") == "postgresql://app@db/x"
    assert mask_url("sqlite:///a.db") == "sqlite:///a.db"


def test_serve_masks_the_password_and_keeps_the_token_off_stderr(postgres_url: str, tmp_path: Path) -> None:
    user_host = postgres_url.split("://", 1)[1]
    user, _, rest = user_host.partition("@")
    db = f"postgresql://{user.split(':')[0]}:hunter2-secret@{rest}"
    prefix = f"s{uuid.uuid4().hex[:8]}_"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DISTILLGUARD_ADMIN_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "distillguard", "serve", "--upstream", "fake", "--port", str(port), "--db", db,
                             "--table-prefix", prefix, "--no-detect", "--log-level", "info"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
        token_file = tmp_path / "distillguard-admin-token"
        token = token_file.read_text().strip()
        assert _mode(token_file) == 0o600
        assert httpx.get(f"http://127.0.0.1:{port}/admin/stats", headers={"authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
        Store(postgres_url, prefix).drop_all()
    assert "hunter2-secret" not in out and "***" in out
    assert token not in out
