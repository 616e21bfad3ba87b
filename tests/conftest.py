"""Shared test fixtures: the real clips in ../shared/fixtures and prepared datasets made from them.

The real clips are required in CI (CI=true): there a missing fixtures folder fails the run instead of
skipping, so a green CI always means the real-data tests ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import browser_page  # noqa: F401  (headless Chromium fixture for page tests)

from talkface.utils.fixtures import fixtures_dir

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"real-clip fixtures not found at {path} (set TALKFACE_FIXTURES)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def fixtures_root() -> Path:
    return _require(fixtures_dir())


@pytest.fixture(scope="session")
def grid_root(fixtures_root: Path) -> Path:
    return _require(fixtures_root / "grid")


@pytest.fixture(scope="session")
def voxceleb_root(fixtures_root: Path) -> Path:
    return _require(fixtures_root / "voxceleb_style")


# Ten s1 clips spread over the fixture set (every 12th in name order): enough for train/val windows.
PREPARED_GRID_N = 10


def _prepare_grid(root: Path, out: Path, clip_filter, workers: int = 1) -> Path:
    from talkface.preprocess.corpora import get_recipe
    from talkface.preprocess.pipeline import PrepareConfig, run_prepare
    from talkface.preprocess.store import DatasetStore

    sources = [s for s in get_recipe("grid").discover(root, split="seen").clips if clip_filter(s)]
    store = DatasetStore(out)
    run_prepare(sources, store, PrepareConfig(), workers=workers)
    return out


@pytest.fixture(scope="session")
def prepared_grid(grid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared GRID dataset (DatasetStore root): 10 real s1 clips, dlib, 128 px crops, logmel."""
    from talkface.preprocess.corpora import get_recipe

    s1 = sorted(c.clip_id for c in get_recipe("grid").discover(grid_root).clips if c.speaker == "s1")
    chosen = set(s1[:: max(1, len(s1) // PREPARED_GRID_N)][:PREPARED_GRID_N])
    return _prepare_grid(grid_root, tmp_path_factory.mktemp("prepared_grid"), lambda s: s.clip_id in chosen)


@pytest.fixture(scope="session")
def prepared_grid_all(grid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 127 fixture clips prepared with 2 workers (the issue's 'done when' run)."""
    return _prepare_grid(grid_root, tmp_path_factory.mktemp("prepared_grid_all"), lambda s: True, workers=2)
