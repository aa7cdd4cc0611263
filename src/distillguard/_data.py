"""Where the data that ships with distillguard lives (the prompt corpora)."""

from __future__ import annotations

import os
from pathlib import Path

CORPORA_ENV = "DISTILLGUARD_CORPORA"
# The corpora ship inside the package (src/distillguard/data/corpora); the wheel leaves out the
# non-commercial sets (see data/corpora/README.md), which are then opt-in through $DISTILLGUARD_CORPORA.
PACKAGED_CORPORA = Path(__file__).resolve().parent / "data" / "corpora"


def corpora_root() -> Path:
    """The prompt corpora folder: `$DISTILLGUARD_CORPORA` when set, else the packaged copy."""
    env = os.environ.get(CORPORA_ENV)
    return Path(env) if env else PACKAGED_CORPORA
