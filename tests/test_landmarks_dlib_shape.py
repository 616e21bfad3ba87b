"""The batched NumPy evaluation of dlib's shape predictor equals dlib's own, to the bit; the tracker's
batched passes equal frame-by-frame tracking; the model reader and its cache."""

from __future__ import annotations

import sys
from pathlib import Path

import dlib
import numpy as np
import pytest

from talkface.core.landmarks import dlib_backend
from talkface.core.landmarks.dlib_backend import DlibBackend
from talkface.core.landmarks.dlib_models import dlib_model_path
from talkface.core.landmarks.dlib_shape import (
    BatchShapePredictor,
    UnsupportedModel,
    load_model,
    read_dlib_model,
)
from talkface.core.media import read_video
from talkface.utils.provenance import sha256_file


def _predictor(key: str) -> tuple[BatchShapePredictor, dlib.shape_predictor]:
    path = dlib_model_path(key)
    return BatchShapePredictor(load_model(path, sha256_file(path))), dlib.shape_predictor(str(path))


def _dlib_points(predictor: dlib.shape_predictor, frames: np.ndarray, rects: np.ndarray) -> np.ndarray:
    return np.array([[(p.x, p.y) for p in predictor(f, dlib.rectangle(*map(int, r))).parts()]
                     for f, r in zip(frames, rects, strict=True)], dtype=np.float32)


def _jittered_boxes(frames: np.ndarray, seed: int) -> np.ndarray:
    """Face boxes moved and resized by up to 12 px, one partly outside the image."""
    box = dlib.get_frontal_face_detector()(frames[len(frames) // 2], 0)[0]
    rng = np.random.default_rng(seed)
    base = np.array([box.left(), box.top(), box.right(), box.bottom()])
    rects = base + rng.integers(-12, 13, (len(frames), 4))
    rects[0] += [-base[0] - 30, 0, -base[0] - 30, 0]  # off the left edge: feature pixels read as 0
    return rects


@pytest.mark.parametrize("key", ["shape_68", "shape_5"])
def test_batched_predictor_equals_dlib_bit_for_bit(grid_root: Path, key: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    batched, reference = _predictor(key)
    for seed, name in enumerate(["bbaf2n", "lgbf8n", "swwp2n"]):
        frames = read_video(grid_root / "s1" / f"{name}.mpg")[:40]
        rects = _jittered_boxes(frames, seed)
        expected = _dlib_points(reference, frames, rects)
        index = np.arange(len(frames))
        # One box a call (a list of images), a few (NumPy sums), many: SciPy's sparse product without
        # torch, embedding_bag with it. Grey images too (dlib reads colour as (r + g + b) // 3).
        one = np.concatenate([batched([frames[i]], rects[i:i + 1]) for i in range(5)])
        np.testing.assert_array_equal(one, expected[:5])
        few = batched(frames, rects[:6], index[:6])
        np.testing.assert_array_equal(few, expected[:6])
        with monkeypatch.context() as m:
            m.delitem(sys.modules, "torch", raising=False)
            np.testing.assert_array_equal(batched(frames, rects, index), expected)
        import torch  # noqa: F401

        np.testing.assert_array_equal(batched(frames, rects, index), expected)
        grey = (frames.astype(np.int32).sum(3) // 3).astype(np.uint8)
        np.testing.assert_array_equal(batched(grey, rects, index), expected)


def test_model_reader_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = dlib_model_path("shape_5")
    model = read_dlib_model(path)
    assert model.n_points == 5 and model.leaves.shape[2] == 10
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = load_model(path, "a" * 64)  # parsed, then cached: small arrays and the leaf table
    cached = sorted(p.name for p in (tmp_path / "talkface" / "dlib_shape").iterdir())
    assert len(cached) == 2 and all(name.startswith("a" * 64) for name in cached)
    again = load_model(path, "a" * 64)  # from the cache, the leaf table mapped copy-on-write
    for field in ("initial_shape", "split_idx", "split_thresh", "leaves", "anchor", "deltas", "table"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert isinstance(again.table.base, np.memmap) and np.shares_memory(again.leaves, again.table)
    again.table[-1] = 1.0  # a spare row written in this process never reaches the file
    np.testing.assert_array_equal(load_model(path, "a" * 64).table[-1], 0.0)
    broken = tmp_path / "not_a_model.dat"
    broken.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UnsupportedModel):
        read_dlib_model(broken)


@pytest.mark.parametrize("clip", ["grid/s1/bbaf2n.mpg", "grid/s1/lgbf8n.mpg", "voxceleb_style/00098.mp4"])
@pytest.mark.parametrize("options", [{}, {"box_hysteresis": 0.0}, {"detect_interval": 1}])
def test_batched_passes_equal_frame_by_frame_tracking(fixtures_root: Path, clip: str, options: dict,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """One frame per chunk leaves nothing to guess: the tracker then runs frame by frame."""
    frames = read_video(fixtures_root / clip)[:120]
    backend = DlibBackend(**options)
    batched = backend.track(iter(frames))
    monkeypatch.setattr(dlib_backend, "CHUNK_FRAMES", 1)
    single = backend.track(iter(frames))
    np.testing.assert_array_equal(batched.points, single.points)
    np.testing.assert_array_equal(batched.face_found, single.face_found)
    np.testing.assert_array_equal(batched.detected, single.detected)
    assert batched.rejected == single.rejected and batched.info == single.info


def test_saved_hog_detector_detects_as_dlibs_own(grid_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dlib_backend._hog_for_thread.cache_clear()
    try:
        built = dlib_backend._hog_detector()  # built by dlib, then saved
        assert list((tmp_path / "talkface" / "dlib_shape").glob("frontal_face_detector-*.svm"))
        dlib_backend._hog_for_thread.cache_clear()
        loaded = dlib_backend._hog_detector()  # read back from the saved file
        assert loaded is not built
        for frame in read_video(grid_root / "s1" / "lgbf8n.mpg")[::8]:
            a, b = built.run(frame, 1, -0.5), loaded.run(frame, 1, -0.5)
            assert [str(r) for r in a[0]] == [str(r) for r in b[0]] and a[1:] == b[1:]
    finally:
        dlib_backend._hog_for_thread.cache_clear()
