"""One version of the provider's watermark key: its secret and the scheme it was used with.

The bottom of the watermark package: seeding, generation and detection take a `KeyVersion`;
only `_keys.WatermarkKey` (all versions, the key file) sits above them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillguard._errors import ConfigError
from distillguard.watermark._config import WatermarkConfig

_MIN_SECRET = 16


@dataclass(frozen=True)
class KeyVersion:
    """One version of the key: its secret and the scheme it was used with."""

    version: int
    secret: bytes = field(repr=False)
    config: WatermarkConfig
    created: str = ""

    def __post_init__(self) -> None:
        if len(self.secret) < _MIN_SECRET:
            raise ConfigError(
                f"Watermark key version {self.version} has a {len(self.secret)}-byte secret; "
                f"use at least {_MIN_SECRET} random bytes (distillguard watermark keygen)."
            )
