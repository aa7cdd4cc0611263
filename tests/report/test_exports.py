import distillguard.report as report


def test_every_public_name_is_exported() -> None:
    public = {n for n in dir(report) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if type(getattr(report, n)).__name__ == "module"}
    assert set(report.__all__) == public - modules
    for name in report.__all__:
        assert getattr(report, name) is not None
