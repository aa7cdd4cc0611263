"""Fixed test keys: statistical assertions on a random key would fail once in a thousand runs."""

from __future__ import annotations

import hashlib

from distillguard.watermark import WatermarkConfig, WatermarkKey
from distillguard.watermark._keys import KeyVersion


def fixed_key(seed: int, config: WatermarkConfig | None = None) -> WatermarkKey:
    """A key whose secret is derived from `seed`, the same in every run."""
    secret = hashlib.sha256(f"distillguard-test-key-{seed}".encode()).digest()
    version = KeyVersion(version=1, secret=secret, config=config or WatermarkConfig())
    return WatermarkKey((version,), active=1)
