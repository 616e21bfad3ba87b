"""CLI: ``talkface prepare <corpus>``, ``talkface inspect``, ``talkface features``, ``talkface demo``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to ``app``."""
