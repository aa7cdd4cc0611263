"""Which optional extra installs which import, and the error that names it.

The table mirrors `[project.optional-dependencies]` in pyproject.toml (a test keeps the two equal):
every distribution there is imported under its own name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from distillguard._errors import MissingExtraError

EXTRAS: dict[str, tuple[str, ...]] = {
    "gateway": (
        "fastapi", "uvicorn", "httptools", "aiohttp", "orjson", "httpx", "limits", "redis",
        "sqlalchemy", "psycopg",
    ),
    "watermark": ("torch", "transformers"),
    "spark": ("pyspark",),
}


def extra_for(module: str) -> str | None:
    """The extra that installs top-level `module` (``"torch.nn"`` counts as ``"torch"``), or None."""
    top = module.split(".", 1)[0]
    for extra, modules in EXTRAS.items():
        if top in modules:
            return extra
    return None


@contextmanager
def extras_hint() -> Iterator[None]:
    """Turn an ImportError of a module that an extra installs into a `MissingExtraError`.

    Other import errors (a broken install, a bug) pass through unchanged.

    Raises:
        MissingExtraError: naming the missing module and `pip install 'distillguard[EXTRA]'`.
    """
    try:
        yield
    except MissingExtraError:
        raise
    except ImportError as exc:
        extra = extra_for(exc.name or "")
        if extra is None:
            raise
        raise MissingExtraError(exc.name or "", extra) from exc
