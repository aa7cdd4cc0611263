"""Usage errors, help and --version through the real entry point, on every command.

`main()` runs exactly what the installed `distillguard` script runs; these tests call it
in-process (a subprocess per command would cost seconds each) and read what it printed.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer

from distillguard import __version__
from distillguard.cli import app, main

# The root command tree, walked once: every leaf command with its path and parameters.
_ROOT = typer.main.get_command(app)


# Typed loosely: typer >= 0.29 builds its commands on its own copy of click, older typer on click.
Command = Any


def _leaves(cmd: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    if hasattr(cmd, "commands"):  # a group
        out: list[tuple[tuple[str, ...], Command]] = []
        for name, sub in sorted(cmd.commands.items()):
            out.extend(_leaves(sub, (*path, name)))
        return out
    return [(path, cmd)]


COMMANDS = _leaves(_ROOT)
IDS = [" ".join(p) for p, _ in COMMANDS]


def _required(cmd: Command) -> list[str]:
    """How a usage error may name each required parameter: its name or any of its flags."""
    return [n for p in cmd.params if p.required for n in (p.name or "", *p.opts)]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out + out.err


def test_the_tree_has_the_known_commands() -> None:
    # Guards the walk itself: were it to find nothing, every test below would pass vacuously.
    assert {"scan", "serve", "simulate", "validate", "keys create", "share export"} <= set(IDS)


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_unknown_option_prints_usage_and_exits_2(
    path: tuple[str, ...], cmd: Command, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run([*path, "--no-such-option"], capsys)
    assert code == 2
    assert f"Usage: distillguard {' '.join(path)}" in out
    assert "No such option: --no-such-option" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_missing_argument_prints_usage_and_exits_2(
    path: tuple[str, ...], cmd: Command, capsys: pytest.CaptureFixture[str]
) -> None:
    required = _required(cmd)
    if not required:
        # Nothing can be missing: the bare command must then at least not be a usage error.
        pytest.skip(f"'{' '.join(path)}' has no required parameter")
    code, out = _run(list(path), capsys)
    assert code == 2
    assert f"Usage: distillguard {' '.join(path)}" in out
    assert "Missing" in out
    assert any(name.lower() in out.lower() for name in required)  # typer < 0.29 upper-cases names
    assert "Traceback" not in out


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_is_clean(
    path: tuple[str, ...], cmd: Command, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run([*path, "--help"], capsys)
    assert code == 0
    assert f"Usage: distillguard {' '.join(path)}" in out
    assert "<bool>" not in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"distillguard {__version__}"


def test_our_errors_are_one_line_not_a_traceback(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(["scan", "no-such-log-dir", "--out", "x", "--engine", "nope"], capsys)
    assert code == 2
    assert "error:" in out and "nope" in out
    assert "Traceback" not in out
