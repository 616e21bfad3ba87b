"""``--executor ray``: the same per-clip function as Ray tasks gives the process pool's dataset, byte for
byte; resume, failure rows and the one manifest writer are kept. Skipped only when Ray is absent."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from needs import require_import

from talkface.prepare.corpora import get_recipe
from talkface.prepare.run import PrepareConfig, run_prepare
from talkface.store.dataset import Dataset
from talkface.store.dataset_writer import DatasetStore

ray = require_import("ray", "pip install 'talkface[ray]'")

CLIPS = ("bbaf2n", "bgah3a", "lbbe1s")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def _sources(grid_root: Path, tmp_path: Path) -> list:
    clips = [c for c in get_recipe("grid").discover(grid_root, split="seen").clips
             if c.speaker == "s1" and c.clip_id.split("_", 1)[1] in CLIPS]
    assert len(clips) == len(CLIPS)
    # one clip that cannot be read: a failure row, in both executors
    broken = tmp_path / "broken.mpg"
    broken.write_bytes(b"not a video")
    bad = type(clips[0])(clip_id="s1_broken", corpus="grid", speaker="s1", split="train",
                         source_video=broken, protocol="seen")
    return [*clips, bad]


def _digests(root: Path) -> dict[str, str]:
    files = [p for sub in ("clips", "crops", "rows", "splits") for p in sorted((root / sub).glob("*"))]
    files.append(root / "manifest.parquet")
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_ray_dataset_equals_process_pool(local_ray, grid_root: Path, tmp_path: Path) -> None:
    sources = _sources(grid_root, tmp_path)
    config = PrepareConfig()
    pool_root, ray_root = tmp_path / "pool", tmp_path / "ray"
    pool = run_prepare(sources, DatasetStore(pool_root), config, workers=2)
    got = run_prepare(sources, DatasetStore(ray_root), config, workers=2, executor="ray")
    assert got.statuses == pool.statuses == {"ok": 3, "failed": 1}
    a, b = _digests(pool_root), _digests(ray_root)
    assert len(a) == 3 * 3 + 1 + 1 + 1  # npz + mp4 + row per good clip, the failed row, protocol, manifest
    assert a == b
    manifest = DatasetStore(ray_root).read_manifest()
    failed = manifest[manifest.status == "failed"]
    assert failed.clip_id.tolist() == ["s1_broken"] and "cannot open" in failed.error.iloc[0]
    assert Dataset.open(ray_root).parts("seen")  # the dataset contract reads it

    # resume: nothing is redone; one clip removed is redone alone
    again = run_prepare(sources, DatasetStore(ray_root), config, workers=2, executor="ray")
    assert again.prepared == 0 and again.skipped == 4
    DatasetStore(ray_root).remove_clip("s1_bgah3a")
    redo = run_prepare(sources, DatasetStore(ray_root), config, workers=2, executor="ray")
    assert redo.prepared == 1 and redo.statuses == {"ok": 1}
    assert _digests(ray_root) == a


def test_a_dead_ray_worker_becomes_a_failure_row(local_ray, grid_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from talkface.prepare import run as executors

    sources = _sources(grid_root, tmp_path)[:1]
    real = executors.prepare_in_worker

    def dies(source, config, root):  # a worker process killed mid-clip (out of memory, node lost)
        import os

        os._exit(1)

    monkeypatch.setattr(executors, "prepare_in_worker", dies)
    summary = run_prepare(sources, DatasetStore(tmp_path / "ds"), PrepareConfig(), executor="ray")
    monkeypatch.setattr(executors, "prepare_in_worker", real)
    assert summary.statuses == {"failed": 1}
    row = DatasetStore(tmp_path / "ds").read_manifest().iloc[0]
    assert row.error.startswith("ray task failed:")


def test_unknown_executor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        run_prepare([], DatasetStore(tmp_path), PrepareConfig(), executor="dask")
