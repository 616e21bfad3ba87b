"""What a test needs from outside the repo (fixture data, an optional package, a browser), one rule:
missing here skips with the reason; missing under ``CI=true`` fails, so a green CI always means every
reference check really ran. The one place the tests read ``CI``."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest


def under_ci() -> bool:
    """``CI`` set to a true value (CI sets ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(message: str) -> NoReturn:
    """Skip with ``message``; under CI, fail with it."""
    if under_ci():
        pytest.fail(f"{message} (required under CI=true)")
    pytest.skip(message)


def require_path(path: Path, what: str = "fixture data") -> Path:
    """``path`` when it exists, else :func:`missing` naming it."""
    if not Path(path).exists():
        missing(f"{what} not found at {path} (set TALKFACE_FIXTURES)")
    return Path(path)


def require_import(name: str, install: str) -> ModuleType:
    """The imported module ``name``, else :func:`missing` saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} is not importable ({exc}); install it with: {install}")
