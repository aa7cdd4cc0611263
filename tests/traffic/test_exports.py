"""The public names of distillguard.traffic are exactly its __all__, and each resolves."""

from __future__ import annotations

import distillguard.traffic as traffic


def test_all_names_resolve_and_nothing_else_is_public() -> None:
    assert len(set(traffic.__all__)) == len(traffic.__all__)
    for name in traffic.__all__:
        assert getattr(traffic, name) is not None
    public = {n for n in vars(traffic) if not n.startswith("_")}
    assert public - set(traffic.__all__) == set()
