"""Model configs saved in checkpoints: read back by field, so a checkpoint written by an older talkface
(fewer or more fields) still loads."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")


def config_from_dict(cls: type[C], d: dict[str, Any]) -> C:
    """A config dataclass from its saved dict: unknown keys dropped, lists back to tuples where the
    field's default is a tuple (JSON and torch.save keep tuples as lists in some paths)."""
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in d:
            continue
        value = d[f.name]
        if isinstance(f.default, tuple) and isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)
