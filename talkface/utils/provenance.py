"""Provenance: every number talkface writes says how it was made."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

from talkface import __version__


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, cached per (path, size, mtime) so repeated calls are free."""
    st = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def provenance(**extra: Any) -> dict[str, Any]:
    """The common header: talkface version, Python, platform, plus caller-specific fields."""
    info: dict[str, Any] = {
        "talkface_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    info.update(extra)
    return info
