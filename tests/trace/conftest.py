from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from distillguard.localmodel import generate_ids, load_default_model, read_corpus_texts


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    # CI and this machine have 2 shared cores: two torch threads contend badly.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def teacher() -> tuple[Any, Any]:
    return load_default_model(progress=False)


@pytest.fixture(scope="session")
def prompts(corpora_dir: Path) -> list[str]:
    return read_corpus_texts(["alpaca_5k"], 60, root=corpora_dir)[20:60]


@pytest.fixture(scope="session")
def plain_ids(teacher: tuple[Any, Any], prompts: list[str]) -> list[list[int]]:
    model, tok = teacher
    return generate_ids(model, tok, prompts[:20], max_new_tokens=200, min_new_tokens=200, seed=0)
