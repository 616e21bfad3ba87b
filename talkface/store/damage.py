"""How every reader of a project file in ``talkface.store`` words damage: one sentence naming the
file, why it cannot be read, and what to do (exit 2 at the command line, never a traceback)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def damage_reason(path: Path, exc: BaseException) -> str:
    """Why a file could not be read, in a few words for a message that names it already: ``empty (0
    bytes)``, else the reader's message without the file's name, cut to 100 characters."""
    try:
        if Path(path).stat().st_size == 0:
            return "empty (0 bytes)"
    except OSError:
        pass
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^Could not open Parquet input source '[^']*': ", "", text).replace(str(path), "the file")
    return text if len(text) <= 100 else text[:97] + "..."


def damaged(error: type[Exception], path: Path, exc: BaseException, todo: str) -> Exception:
    """``error("<path> is damaged (<why>): <todo>")``."""
    return error(f"{path} is damaged ({damage_reason(path, exc)}): {todo}")


def read_json_object(path: Path, error: type[Exception], todo: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` in one sentence when it cannot be read or is not an object
    (``what``: what it should be, e.g. "a run record")."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise damaged(error, path, exc, todo) from None
    if not isinstance(value, dict):
        raise error(f"{path} is damaged (not {what}): {todo}")
    return value


def read_parquet_table(path: Path, error: type[Exception], todo: str, what: str,
                       columns: Sequence[str]) -> Any:
    """The table in ``path`` (a pandas DataFrame); ``error`` in one sentence when it cannot be read or
    lacks one of ``columns`` (``what``: what it should be, e.g. "a dataset manifest")."""
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001  (pyarrow raises several kinds for a damaged file)
        raise damaged(error, path, exc, todo) from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise error(f"{path} is not {what} (no {', '.join(missing)} column): {todo}")
    return df
