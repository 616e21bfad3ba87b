"""Folder layouts declared as data: one attribute per file or folder under an object's root path."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PathUnder:
    """A read-only attribute for a fixed path below another path attribute of the same object.

    ``manifest_path = PathUnder("root", "manifest.parquet")`` in a class body reads as
    ``self.root / "manifest.parquet"`` on each access (so it follows ``root`` if that changes), the
    way a ``@property`` returning that path would.
    """

    def __init__(self, base: str, *parts: str) -> None:
        self.base = base
        self.parts = parts
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return Path(getattr(obj, self.base)).joinpath(*self.parts)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(f"{self.name} follows {self.base}; set {self.base} instead")
