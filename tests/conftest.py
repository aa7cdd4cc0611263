"""Shared fixtures. Real servers only: a missing PostgreSQL or Redis fails the test, never skips it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillguard._data import corpora_root

CORPORA = corpora_root()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _service_url(name: str, env: str, default: str, port: int) -> str:
    """The URL of a local test service (`env` overrides `default`); the test fails when
    nothing listens on 127.0.0.1:`port`."""
    url = os.environ.get(env, default)
    if not _reachable("127.0.0.1", port):
        pytest.fail(f"{name} is not reachable on 127.0.0.1:{port} (run scripts/services)")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _service_url("PostgreSQL", "DISTILLGUARD_TEST_POSTGRES",
                        "postgresql://postgres@127.0.0.1:5432/test", 5432)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _service_url("Redis", "DISTILLGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0", 6379)


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    if not (CORPORA / "README.md").exists():
        pytest.fail(f"prompt corpora not found at {CORPORA}")
    return CORPORA


# The tiny teacher model and its plain generations, shared by the watermark and trace tests.
@pytest.fixture(scope="session")
def _one_torch_thread() -> Iterator[None]:
    import torch

    # CI and this machine have 2 shared cores: two torch threads contend badly.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def teacher(_one_torch_thread: None) -> tuple[Any, Any]:
    from distillguard.localmodel import load_default_model

    return load_default_model(progress=False)


@pytest.fixture(scope="session")
def prompts(corpora_dir: Path) -> list[str]:
    from distillguard.localmodel import read_corpus_texts

    return read_corpus_texts(["self_instruct_user_oriented"], 60, root=corpora_dir)[20:60]


@pytest.fixture(scope="session")
def plain_ids(teacher: tuple[Any, Any], prompts: list[str]) -> list[list[int]]:
    from distillguard.localmodel import generate_ids

    model, tok = teacher
    return generate_ids(model, tok, prompts[:20], max_new_tokens=200, min_new_tokens=200, seed=0)
