"""Where the shared real-clip fixtures live (tests and benchmarks read them, never copy them)."""

from __future__ import annotations

import os
from pathlib import Path


def fixtures_dir() -> Path:
    """``$TALKFACE_FIXTURES``, else ``../shared/fixtures`` relative to the repository root."""
    env = os.environ.get("TALKFACE_FIXTURES")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "fixtures"
