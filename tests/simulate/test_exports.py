"""The public names of distillguard.simulate are exactly its __all__, and each resolves."""

from __future__ import annotations

import distillguard.simulate as simulate


def test_all_names_resolve_and_nothing_else_is_public() -> None:
    assert len(set(simulate.__all__)) == len(simulate.__all__)
    for name in simulate.__all__:
        assert getattr(simulate, name) is not None
    public = {n for n in vars(simulate) if not n.startswith("_")}
    assert public - set(simulate.__all__) == set()
