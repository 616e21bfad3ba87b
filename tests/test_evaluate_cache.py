"""Reference landmarks are cached beside the results: a second method scored against the same reference
clips does not run the landmark detector on them, and its values equal those computed without the
cache. The key follows the reference file, the frames scored and the detector's settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from talkface.evaluate.reference_cache import CACHE_SUBDIR
from talkface.evaluate.runner import EvaluateConfig, run_evaluate
from talkface.store.dataset import Dataset
from talkface.store.results import ResultsStore

METRICS = ["psnr", "lmd_mouth", "lmd_face", "blink_rate"]
QUIET = {"echo": lambda *_: None}


@pytest.fixture(scope="module")
def methods(prepared_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two methods on the same two reference clips: a static frame and a blurred copy."""
    import cv2

    from talkface.core.media import read_audio, read_video, write_video

    ds = Dataset.open(prepared_grid)
    ids = [r.clip_id for r in ds.records(usable_only=True)][:2]
    root = tmp_path_factory.mktemp("cache_methods")
    dirs = {"static": root / "static", "blur": root / "blur", "short": root / "short"}
    for d in dirs.values():
        d.mkdir()
    frames_of = {}
    for cid in ids:
        frames = read_video(ds.crop_path(cid))
        audio = read_audio(ds.crop_path(cid))
        frames_of[cid] = frames
        write_video(dirs["static"] / f"{cid}.mp4", [frames[0]] * len(frames), 25.0, audio)
        write_video(dirs["blur"] / f"{cid}.mp4", [cv2.GaussianBlur(f, (0, 0), 1.5) for f in frames], 25.0,
                    audio)
    # one frame short: scored on 74 reference frames, so another cache entry
    audio = read_audio(ds.crop_path(ids[0]))
    write_video(dirs["short"] / f"{ids[0]}.mp4", frames_of[ids[0]][:-1], 25.0, audio)
    return {"ids": ids, "dirs": dirs, "data": prepared_grid, "ref_frames": frames_of}


class _Counting:
    """A landmark backend that counts the tracks it runs on reference frames and on other frames."""

    def __init__(self, inner, calls: dict, ref_frames: dict) -> None:
        self.inner, self.calls = inner, calls
        self.firsts = [f[0] for f in ref_frames.values()]

    def track(self, frames):
        frames = list(frames)
        side = "reference" if any(np.array_equal(frames[0], f) for f in self.firsts) else "generated"
        self.calls[side] += 1
        return self.inner.track(iter(frames))

    def settings(self):
        return self.inner.settings()


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch, methods: dict) -> dict:
    import talkface.core.landmarks as landmarks

    calls = {"reference": 0, "generated": 0}
    real = landmarks.get_landmark_backend
    monkeypatch.setattr(landmarks, "get_landmark_backend",
                        lambda *a, **k: _Counting(real(*a, **k), calls, methods["ref_frames"]))
    return calls


def _evaluate(methods: dict, name: str, out: Path, **options) -> dict:
    cfg = EvaluateConfig(methods["dirs"][name], methods["data"], name, out, metrics=METRICS, **options)
    return run_evaluate(cfg, **QUIET)


def _use(record: dict) -> tuple[int, int]:
    """(hits, detected) of the run's reference-landmark cache."""
    return record["reference_landmark_cache"]["hits"], record["reference_landmark_cache"]["detected"]


def _rows(out: Path, method: str) -> pd.DataFrame:
    df = ResultsStore(out).read(method)
    return df.sort_values(["clip_id", "metric", "variant"]).reset_index(drop=True)


def test_a_second_method_reuses_the_reference_landmarks(methods, counting, tmp_path: Path) -> None:
    out, n = tmp_path / "results", len(methods["ids"])
    first = _evaluate(methods, "static", out)
    assert counting == {"reference": n, "generated": n}
    assert _use(first) == (0, n)
    entries = sorted((out / CACHE_SUBDIR).glob("*.npz"))
    assert len(entries) == n and not list((out / CACHE_SUBDIR).glob(".*"))  # atomic: no temporary left

    second = _evaluate(methods, "blur", out)
    assert counting == {"reference": n, "generated": 2 * n}  # no detector call on a reference frame
    assert second["reference_landmark_cache"] == {"folder": str((out / CACHE_SUBDIR).resolve()),
                                                  "hits": n, "detected": 0}

    # the same values as without the cache, to the bit (values, per-frame values, details)
    plain = tmp_path / "plain"
    none = _evaluate(methods, "blur", plain, landmark_cache=False)
    assert none["reference_landmark_cache"] is None and not (plain / "cache").exists()
    assert counting["reference"] == 2 * n
    cached, fresh = _rows(out, "blur"), _rows(plain, "blur")
    assert len(cached) == n * len(METRICS) and cached["error"].isna().all()
    pd.testing.assert_frame_equal(cached, fresh)
    lmd = cached[cached["metric"] == "lmd_mouth"]["value"]
    assert (lmd > 0).all()  # a landmark metric that actually measured something


def test_the_cache_persists_and_its_key_follows_the_settings(methods, counting, tmp_path: Path) -> None:
    out, n = tmp_path / "results", len(methods["ids"])
    _evaluate(methods, "static", out)
    # another folder's results, the same cache files: a later run (another process) finds them
    later = tmp_path / "later"
    shutil.copytree(out / "cache", later / "cache")
    rec = _evaluate(methods, "blur", later)
    assert rec["reference_landmark_cache"]["hits"] == n and counting["reference"] == n

    # another detector setting is another key: detected again, cached beside the first
    rec = _evaluate(methods, "blur", out, landmark_options={"detect_interval": 5})
    assert rec["reference_landmark_cache"]["detected"] == n and counting["reference"] == 2 * n
    assert len(list((out / CACHE_SUBDIR).glob("*.npz"))) == 2 * n

    # a reference trimmed to 74 frames is another key; the 75-frame entry is not used for it
    rec = _evaluate(methods, "short", out)
    assert _use(rec) == (0, 1)
    assert _rows(out, "short")["flags"].eq("trimmed:74vs75").all()


def test_an_unreadable_cache_entry_is_recomputed(methods, counting, tmp_path: Path) -> None:
    out, n = tmp_path / "results", len(methods["ids"])
    _evaluate(methods, "static", out)
    before = _rows(out, "static")
    entries = sorted((out / CACHE_SUBDIR).glob("*.npz"))
    entries[0].write_bytes(b"truncated")
    rec = _evaluate(methods, "static", out)
    assert _use(rec) == (n - 1, 1)
    pd.testing.assert_frame_equal(_rows(out, "static"), before)
    with np.load(entries[0]) as data:  # rewritten
        assert data["points"].shape == (75, 68, 2)


def test_cli_no_landmark_cache(methods, tmp_path: Path) -> None:
    from talkface.cli import app

    out = tmp_path / "results"
    args = ["evaluate", "--generated", str(methods["dirs"]["static"]), "--data", str(methods["data"]),
            "--method", "static", "--out", str(out), "--metrics", "lmd_mouth"]
    result = CliRunner().invoke(app, [*args, "--no-landmark-cache"])
    assert result.exit_code == 0, result.output
    assert not (out / "cache").exists()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list((out / CACHE_SUBDIR).glob("*.npz"))) == len(methods["ids"])
    assert ResultsStore(out).run_record("static")["options"]["landmark_cache"] is True
