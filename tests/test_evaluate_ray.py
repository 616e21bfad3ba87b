"""``evaluate --executor ray``: the same per-clip scoring as Ray tasks gives the process pool's rows and
summary; failure rows, the one results writer, reruns and the reference-landmark cache are kept.
Skipped only when Ray is absent, and never under CI=true (the test extra installs it)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from needs import require_import
from typer.testing import CliRunner

from talkface.evaluate.reference_cache import CACHE_SUBDIR
from talkface.evaluate.runner import EvaluateConfig, EvaluateError, run_evaluate
from talkface.store.dataset import Dataset
from talkface.store.results import ResultsStore

ray = require_import("ray", "pip install 'talkface[ray]'")

# deterministic metrics, landmarks on both sides (cpbd is left out: it adds time, not coverage)
METRICS = ["psnr", "ssim", "lmd_mouth", "lmd_face", "blink_rate"]
QUIET = {"echo": lambda *_: None}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def static_frame(prepared_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The static-frame baseline (reference frame 0 held, with the clip's audio) on three prepared
    clips, plus one unreadable video: a failure row in every executor."""
    from talkface.core.media import read_audio, read_video, write_video

    ds = Dataset.open(prepared_grid)
    ids = [r.clip_id for r in ds.records(usable_only=True)][:4]
    folder = tmp_path_factory.mktemp("static_frame")
    for cid in ids[:3]:
        frames = read_video(ds.crop_path(cid))
        write_video(folder / f"{cid}.mp4", [frames[0]] * len(frames), 25.0, read_audio(ds.crop_path(cid)))
    (folder / f"{ids[3]}.mp4").write_bytes(b"not a video")
    return {"ids": ids, "generated": folder, "data": prepared_grid}


def _run(setup: dict, out: Path, method: str = "static-frame", **options) -> dict:
    cfg = EvaluateConfig(setup["generated"], setup["data"], method, out, metrics=METRICS, **options)
    return run_evaluate(cfg, **QUIET)


def _rows(out: Path, method: str = "static-frame") -> pd.DataFrame:
    df = ResultsStore(out).read(method)
    return df.sort_values(["clip_id", "metric", "variant"]).reset_index(drop=True)


def _summary(out: Path, method: str = "static-frame") -> dict:
    return json.loads((out / "summary.json").read_text())["methods"][method]


def test_ray_rows_and_summary_equal_the_process_pool(local_ray, static_frame, tmp_path: Path) -> None:
    pool_out, ray_out = tmp_path / "pool", tmp_path / "ray"
    pool = _run(static_frame, pool_out, workers=2)
    got = _run(static_frame, ray_out, workers=2, executor="ray")
    a, b = _rows(pool_out), _rows(ray_out)
    assert len(a) == 4 * len(METRICS)
    # every column, per-frame values included, equal to the bit (the metrics are deterministic)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ok = a[a["clip_id"] != static_frame["ids"][3]]
    assert ok["error"].isna().all() and np.isfinite(ok["value"]).all()
    bad = b[b["clip_id"] == static_frame["ids"][3]]
    assert bad["value"].isna().all() and bad["error"].str.startswith("video:").all()
    # the summaries: statistics, failures and definitions; the run records differ only in their options
    sa, sb = _summary(pool_out), _summary(ray_out)
    assert sa["metrics"] == sb["metrics"] and sa["trimmed"] == sb["trimmed"]
    assert got["options"]["executor"] == "ray" and pool["options"]["executor"] == "process"
    for key in ("pairing", "unreadable_clips", "frames_scored", "metrics", "protocol", "landmark_detector"):
        assert got[key] == pool[key], key
    # the workers detected the reference landmarks; this process cached them
    assert got["reference_landmark_cache"]["detected"] == 3
    assert len(list((ray_out / CACHE_SUBDIR).glob("*.npz"))) == 3

    # a rerun replaces the method's rows (no resume in evaluate, as with the pool): the Ray workers now
    # read the cached reference landmarks, and the rows are the same
    again = _run(static_frame, ray_out, workers=2, executor="ray")
    use = again["reference_landmark_cache"]
    assert (use["hits"], use["detected"]) == (3, 0)
    pd.testing.assert_frame_equal(_rows(ray_out), a, check_exact=True)
    assert ResultsStore(ray_out).methods() == ["static-frame"]
    assert not (ray_out / ".talkface.lock").exists()  # the one writer released the results folder


def test_a_dead_ray_worker_becomes_failure_rows(local_ray, static_frame, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from talkface.evaluate import runner

    def dies(job, setup):  # a worker process killed mid-clip (out of memory, node lost)
        os._exit(1)

    monkeypatch.setattr(runner, "score_in_worker", dies)
    one = tmp_path / "one"
    one.mkdir()
    cid = static_frame["ids"][0]
    shutil.copy(static_frame["generated"] / f"{cid}.mp4", one / f"{cid}.mp4")
    cfg = EvaluateConfig(one, static_frame["data"], "dies", tmp_path / "out", metrics=["psnr", "lmd_mouth"],
                         executor="ray")
    rec = run_evaluate(cfg, **QUIET)
    rows = _rows(tmp_path / "out", "dies")
    assert len(rows) == 2 and rows["value"].isna().all()
    assert rows["error"].str.startswith("ray task failed:").all()
    # the failure rows carry the same definitions as scored rows would (detector, resolution)
    definition = json.loads(rows[rows["metric"] == "lmd_mouth"]["definition"].iloc[0])
    assert definition["detector"] == rec["landmark_detector"] and "128x128" in definition["resolution"]


def test_executor_options_are_checked(static_frame, tmp_path: Path) -> None:
    from talkface.cli import app

    with pytest.raises(EvaluateError, match="unknown executor 'dask'"):
        _run(static_frame, tmp_path / "x", executor="dask")
    base = ["evaluate", "--generated", str(static_frame["generated"]), "--data", str(static_frame["data"]),
            "--method", "m", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*base, "--executor", "dask"])
    assert result.exit_code == 2 and "choose one of process, ray" in result.output
    result = CliRunner().invoke(app, [*base, "--ray-address", "auto"])
    assert result.exit_code == 2 and "--ray-address needs --executor ray" in result.output
