import distillguard.detect as detect
import distillguard.detect._evidence as evidence


def test_every_public_name_is_exported() -> None:
    for package in (detect, evidence):
        public = {n for n in dir(package) if not n.startswith("_")} - {"annotations", "TYPE_CHECKING"}
        modules = {n for n in public if type(getattr(package, n)).__name__ == "module"}
        lazy = {"OnlineDetector", "EndUserDetector", "CampaignKeys", "RequestKeys", "request_keys"} if package is detect else set()  # loaded on first use
        assert set(package.__all__) == (public - modules) | lazy, package.__name__
        for name in package.__all__:
            assert getattr(package, name) is not None


def test_evidence_modules_never_import_the_decision_core() -> None:
    """Imports point one way: the core and the decision step read the modules, never back."""
    import ast
    from pathlib import Path

    for path in Path(evidence.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module not in ("distillguard.detect._core",
                                           "distillguard.detect._decision"), path.name
