"""The model that ships with talkface: trained stages for ``generate`` with no ``--checkpoints``.

It lies in the package (``talkface/data/pretrained/``) in the checkpoints contract's layout (``lm/``,
``blink/``, ``tex/`` run folders) with ``model_index.json`` saying what made it: the command, the data,
seed, budget, each file's SHA-256 and the licence of the data it was trained on (GRID, CC BY 4.0).
``scripts/make_pretrained.py`` makes it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

INDEX_FILE = "model_index.json"
DEFAULT_RUNS = Path("runs")


def pretrained_dir() -> Path | None:
    """The shipped model's folder, None when this install carries none."""
    folder = Path(str(resources.files("talkface") / "data" / "pretrained"))
    return folder if (folder / INDEX_FILE).is_file() else None


def pretrained_index() -> dict[str, Any] | None:
    folder = pretrained_dir()
    return None if folder is None else json.loads((folder / INDEX_FILE).read_text())


def resolve_checkpoints(given: Path | None) -> tuple[Path, str | None]:
    """The checkpoints folder to load and a note to print: ``given``; else ``runs/`` when it exists
    (talkface's default training folder); else the shipped model, said so."""
    if given is not None:
        return given, None
    if DEFAULT_RUNS.is_dir():
        return DEFAULT_RUNS, None
    folder = pretrained_dir()
    if folder is None:
        return DEFAULT_RUNS, None  # the usual "train it first" message names runs/
    index = pretrained_index() or {}
    trained = index.get("trained_on", "the fixture speakers")
    return folder, (f"note: no --checkpoints and no runs/ here: using the model shipped with talkface "
                    f"({folder}), trained on {trained}; see its model_index.json")
