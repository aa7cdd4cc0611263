"""One version string, one detector: the config class's defaults are the shipped file's."""

from __future__ import annotations

from distillguard.detect._config import DetectConfig, load_config


def test_class_defaults_equal_the_shipped_config_file() -> None:
    assert DetectConfig().model_dump() == load_config().model_dump()
