"""What a local model is built from: one frozen value object, hashed into its cache key."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distillguard._data import corpora_root

# Bump when the training code changes in a way that changes the trained weights.
_CODE_VERSION = 1

# Permissively licensed sets only (MIT, Apache-2.0, CC BY): the CC BY-NC ones are opt-in by name.
DEFAULT_CORPORA = ("gsm8k", "self_instruct_seed_tasks", "self_instruct_user_oriented", "bfcl_curated", "mbpp", "humaneval")


@dataclass(frozen=True)
class LocalModelConfig:
    """A tiny GPT-2 style causal LM and its byte-level BPE tokenizer.

    The defaults give about 0.3 M parameters, trained for a few hundred steps on
    the shipped prompt corpora: enough to produce text-like continuations with a
    real next-token distribution (so watermarks have entropy to work with),
    small enough to train in well under a minute on two CPU cores.
    """

    vocab_size: int = 512
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 96
    n_positions: int = 256
    corpora: tuple[str, ...] = DEFAULT_CORPORA
    max_docs_per_corpus: int = 3000
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 300
    learning_rate: float = 3e-3
    seed: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def cache_key(self) -> str:
        """A short hash of every field and the training code version."""
        payload = asdict(self)
        payload["corpora"] = list(self.corpora)
        payload["_code_version"] = _CODE_VERSION
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def corpora_dir() -> Path:
    """The prompt corpora: `$DISTILLGUARD_CORPORA`, else the copy shipped in the package."""
    return corpora_root()


def cache_dir() -> Path:
    """Where trained artefacts live: `$DISTILLGUARD_CACHE`, else `~/.cache/distillguard`."""
    env = os.environ.get("DISTILLGUARD_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "distillguard"
    return base
