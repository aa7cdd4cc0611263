"""Files only their owner may read (keys, tokens, captured traffic), and credentials kept out
of what is printed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

#: mode of every file that holds a secret or captured traffic
PRIVATE_MODE = 0o600


def write_private(path: str | Path, text: str) -> Path:
    """Write `text` to `path` readable by its owner only, atomically: a temporary file in the
    same directory (created 0600), flushed to disk, then renamed over `path`. A crash leaves
    the old file whole, and an old file's looser mode never carries over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, PRIVATE_MODE)  # mkstemp's mode already, unless the platform differs
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def create_private(path: str | Path) -> bool:
    """Create an empty file at `path` readable by its owner only, if there is none; whether
    it was created. (SQLite gives its -wal and -shm files the database file's mode.)"""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def mask_url(url: str) -> str:
    """`url` with any password replaced by ***, for banners and logs."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, at, host = rest.rpartition("@")
    if ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***{at}{host}"
