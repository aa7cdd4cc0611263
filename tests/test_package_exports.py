"""Every package's public names are exactly its `__all__` (found by walking the package)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import distillguard

PACKAGES = ["distillguard"] + [
    f"distillguard.{m.name}"
    for m in pkgutil.iter_modules(distillguard.__path__)
    # `cli` is the command (its API is `main`), `data` holds files.
    if m.ispkg and not m.name.startswith("_") and m.name not in ("cli", "data")
]


def test_the_walk_finds_the_packages() -> None:
    assert {"distillguard.cases", "distillguard.share", "distillguard.demo", "distillguard.report"} <= set(PACKAGES)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_is_exported(name: str) -> None:
    pkg = importlib.import_module(name)
    exported = set(pkg.__all__)
    for attr in exported:  # lazily loaded names (a module `__getattr__`) count once they resolve
        assert getattr(pkg, attr) is not None, attr
    public = {n for n in dir(pkg) if not n.startswith("_")} - {"annotations", "TYPE_CHECKING"}
    modules = {n for n in public if type(getattr(pkg, n)).__name__ == "module"}
    assert public - modules <= exported
