"""A command whose optional dependency is missing names the extra to install."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from distillguard import MissingExtraError
from distillguard._extras import EXTRAS, extra_for, extras_hint
from distillguard.cli import main

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _hide(monkeypatch: pytest.MonkeyPatch, module: str, *reload: str) -> None:
    """Make `import module` fail as if it were not installed, and forget our modules using it."""
    monkeypatch.setitem(sys.modules, module, None)
    for name in list(sys.modules):
        if any(name == r or name.startswith(r + ".") for r in reload):
            monkeypatch.delitem(sys.modules, name)


def test_table_matches_pyproject() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        names = {req.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                 for req in extras[extra]}
        assert names == set(modules), extra
    (everything,) = extras["all"]  # "distillguard[gateway,watermark,spark]"
    assert set(everything.split("[", 1)[1].rstrip("]").split(",")) == set(EXTRAS)


@pytest.mark.parametrize(
    ("module", "extra"), [("torch.nn", "watermark"), ("fastapi", "gateway"), ("pyspark.sql", "spark")]
)
def test_import_error_of_an_extra_names_it(module: str, extra: str) -> None:
    with pytest.raises(MissingExtraError) as exc, extras_hint():
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)
    assert f"pip install 'distillguard[{extra}]'" in str(exc.value)
    assert extra_for(module) == extra


def test_other_import_errors_pass_through() -> None:
    with pytest.raises(ModuleNotFoundError) as exc, extras_hint():
        raise ModuleNotFoundError("No module named 'nosuch'", name="nosuch")
    assert not isinstance(exc.value, MissingExtraError)


@pytest.mark.parametrize(
    ("argv", "module", "reload", "extra"),
    [
        (["ui", "log", "verdicts"], "uvicorn", (), "gateway"),
        (["serve"], "fastapi", ("distillguard.gateway", "distillguard.ui"), "gateway"),
        (["keys", "list", "--db", "sqlite:///{tmp}/keys.db"], "sqlalchemy", ("distillguard.gateway",), "gateway"),
        (["watermark", "train-model"], "torch", ("distillguard.localmodel",), "watermark"),
    ],
    ids=["ui", "serve", "keys", "watermark"],
)
def test_command_without_its_extra_names_it(
    argv: list[str],
    module: str,
    reload: tuple[str, ...],
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _hide(monkeypatch, module, *reload)
    monkeypatch.chdir(tmp_path)  # whatever a command would write by default lands here
    with pytest.raises(SystemExit) as exc:
        main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"pip install 'distillguard[{extra}]'" in err
    assert "Traceback" not in err
