from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from distillguard._errors import ConfigError
from distillguard.watermark import KeyVersion, WatermarkConfig, WatermarkKey


def test_roundtrip_is_private_and_exact(tmp_path: Path) -> None:
    key = WatermarkKey.generate(WatermarkConfig(scheme="gumbel", context_width=2))
    path = key.save(tmp_path / "wm.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = WatermarkKey.load(path)
    assert loaded == key
    assert loaded.config.scheme == "gumbel" and loaded.config.context_width == 2
    assert WatermarkKey.generate().current.secret != key.current.secret


def test_no_default_or_weak_secret() -> None:
    with pytest.raises(TypeError):
        WatermarkKey()  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="at least 16 random bytes"):
        KeyVersion(version=1, secret=b"short", config=WatermarkConfig())


def test_rotation_keeps_old_versions() -> None:
    key = WatermarkKey.generate()
    rotated = key.rotate()
    assert rotated.active == 2 and [v.version for v in rotated.versions] == [1, 2]
    assert rotated.versions[0] == key.versions[0]


def test_bad_files_and_settings_explain_themselves(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keygen"):
        WatermarkKey.load(tmp_path / "missing.key")
    (tmp_path / "bad.key").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match="not a distillguard watermark key"):
        WatermarkKey.load(tmp_path / "bad.key")
    with pytest.raises(ConfigError, match="gamma"):
        WatermarkConfig(gamma=1.5)
    with pytest.raises(ConfigError, match="Unknown watermark settings"):
        WatermarkConfig.from_dict({"gama": 0.3})
