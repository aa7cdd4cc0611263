"""What a local model is built from: one frozen value object, hashed into its cache key."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from distillguard._data import corpora_root

# Bump when the training code changes in a way that changes the trained weights.
_CODE_VERSION = 2

# The permissively licensed text corpora that ship in the wheel (MIT, Apache-2.0, CC BY, ODC-BY;
# data/corpora/README.md); never the opt-in sets (the CC BY-NC ones, and ShareGPT, whose content
# has no stated licence).
DEFAULT_CORPORA = (
    "gsm8k",
    "self_instruct_seed_tasks",
    "self_instruct_user_oriented",
    "arena_hard",
    "wildchat_1k",
    "bfcl_live",
    "bfcl_curated",
    "humaneval",
    "mbpp",
)
# Question/answer pairs (GSM8K's own worked solutions, MIT): real answers to learn the turn from.
DEFAULT_ANSWER_CORPUS = "gsm8k_answers"


@dataclass(frozen=True)
class LocalModelConfig:
    """A tiny GPT-2 style causal LM and its byte-level BPE tokenizer.

    The defaults give about 0.3 M parameters, trained for a few hundred steps on
    one-turn chats (`user: PROMPT` / `assistant: ANSWER`) built from the shipped
    permissive corpora: GSM8K questions with their worked answers, and every other
    prompt answered by a neighbouring prompt of its corpus in the same script, so
    the model learns to reply after `assistant:` in the prompt's writing system.
    Enough for text-like answers with a real next-token distribution (so
    watermarks have entropy to work with), small enough to train in about a
    minute on two CPU cores.
    """

    vocab_size: int = 512
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 96
    n_positions: int = 256
    corpora: tuple[str, ...] = DEFAULT_CORPORA
    answers: str | None = DEFAULT_ANSWER_CORPUS
    max_docs_per_corpus: int = 2000
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
