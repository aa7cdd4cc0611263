"""The provider's watermark key: versioned secrets in one file, no default.

Key file (JSON, written with mode 0600)::

    {"format": "distillguard-watermark-key", "format_version": 1, "active": 2,
     "versions": [{"version": 1, "secret": "<64 hex>", "created": "...", "config": {...}},
                  {"version": 2, ...}]}

Generation uses the active version; detection tries every version, so text
marked before a rotation still verifies.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillguard._errors import ConfigError
from distillguard._private import write_private
from distillguard.watermark._config import WatermarkConfig
from distillguard.watermark._lexical import TextWatermarker
from distillguard.watermark._processor import WatermarkLogitsProcessor
from distillguard.watermark._version import KeyVersion

__all__ = ["FORMAT", "KeyVersion", "WatermarkKey"]

FORMAT = "distillguard-watermark-key"


@dataclass(frozen=True)
class WatermarkKey:
    """All versions of the provider's key; `active` marks new text."""

    versions: tuple[KeyVersion, ...]
    active: int

    def __post_init__(self) -> None:
        numbers = [v.version for v in self.versions]
        if not numbers:
            raise ConfigError("A watermark key needs at least one version.")
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"Watermark key versions repeat: {numbers}.")
        if self.active not in numbers:
            raise ConfigError(f"Active key version {self.active} is not among {numbers}.")

    @property
    def current(self) -> KeyVersion:
        return next(v for v in self.versions if v.version == self.active)

    @property
    def config(self) -> WatermarkConfig:
        return self.current.config

    @classmethod
    def generate(cls, config: WatermarkConfig | None = None) -> WatermarkKey:
        """A fresh key: one version with 32 random bytes from the OS."""
        return cls((_new_version(1, config or WatermarkConfig()),), active=1)

    def rotate(self, config: WatermarkConfig | None = None) -> WatermarkKey:
        """A key with a new active version added; old versions still verify."""
        number = max(v.version for v in self.versions) + 1
        new = _new_version(number, config or self.config)
        return WatermarkKey((*self.versions, new), active=number)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": 1,
            "active": self.active,
            "versions": [
                {
                    "version": v.version,
                    "secret": v.secret.hex(),
                    "created": v.created,
                    "config": v.config.to_dict(),
                }
                for v in self.versions
            ],
        }

    def save(self, path: str | Path) -> Path:
        """Write the key file, readable by its owner only, by temporary file and rename (a
        crash mid-write keeps the old file, and an existing file's looser mode goes)."""
        return write_private(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> WatermarkKey:
        """Read a key file written by `save` (or `distillguard watermark keygen`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"Watermark key file {path} does not exist; create one with "
                "`distillguard watermark keygen --out FILE`."
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"Watermark key file {path} is not valid JSON: {exc}.") from exc
        return cls.from_json(data, where=str(path))

    @classmethod
    def from_json(cls, data: Any, where: str = "key") -> WatermarkKey:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{where} is not a distillguard watermark key (format {FORMAT!r}).")
        try:
            versions = tuple(
                KeyVersion(
                    version=int(v["version"]),
                    secret=bytes.fromhex(v["secret"]),
                    config=WatermarkConfig.from_dict(dict(v.get("config", {}))),
                    created=str(v.get("created", "")),
                )
                for v in data["versions"]
            )
            return cls(versions, active=int(data["active"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where} is malformed ({exc!r}); regenerate it with keygen.") from exc

    def logits_processor(self, account_id: str) -> WatermarkLogitsProcessor:
        """A transformers LogitsProcessor marking generated text for `account_id`."""
        return WatermarkLogitsProcessor(self.current, account_id)

    def text_watermarker(self, account_id: str) -> TextWatermarker:
        """A post-hoc lexical watermarker for text from upstreams we cannot steer."""
        return TextWatermarker(self.current, account_id)


def _new_version(number: int, config: WatermarkConfig) -> KeyVersion:
    return KeyVersion(
        version=number,
        secret=secrets.token_bytes(32),
        config=config,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
