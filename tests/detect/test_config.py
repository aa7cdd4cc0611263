"""One version string, one detector: the config class's defaults are the shipped file's."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard._errors import ConfigError
from distillguard.detect._config import DetectConfig, load_config


def test_class_defaults_equal_the_shipped_config_file() -> None:
    assert DetectConfig().model_dump() == load_config().model_dump()


def test_the_old_rarity_section_says_where_it_moved(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text("[rarity]\nmax_p = 1e-5\n")
    with pytest.raises(ConfigError, match=r"\[rarity\] section is now \[evidence\.rarity\]"):
        load_config(path)
    path.write_text("[evidence.rarity]\nmax_p = 1e-5\n")
    assert load_config(path).evidence.rarity.max_p == 1e-5
