"""Face detectors behind the one dlib backend: HOG, CNN (MMOD) and the per-frame ``hog,cnn`` chain,
the largest-face choice for frames with several faces, and what each records in the dataset info."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest

from talkface.core.landmarks import get_landmark_backend
from talkface.core.landmarks.dlib_backend import DlibBackend, parse_detectors
from talkface.core.landmarks.dlib_models import dlib_model_path
from talkface.core.media import read_video
from talkface.store.dataset import BackendInfo


@pytest.fixture(scope="module")
def hog() -> DlibBackend:
    return get_landmark_backend("dlib")


@pytest.fixture(scope="module")
def cnn() -> DlibBackend:
    return get_landmark_backend("dlib", detector="mmod")


@pytest.fixture(scope="module")
def chain() -> DlibBackend:
    return get_landmark_backend("dlib", detector="hog,cnn", detect_interval=1)


def _sha(key: str) -> str:
    return hashlib.sha256(dlib_model_path(key).read_bytes()).hexdigest()


def _dark(frame: np.ndarray, seed: int) -> np.ndarray:
    """Low light: a tenth of the light and sensor noise (sigma 6 grey levels)."""
    rng = np.random.default_rng(seed)
    return np.clip(frame * 0.1 + rng.normal(0, 6, frame.shape), 0, 255).astype(np.uint8)


def test_detector_names_and_errors() -> None:
    assert parse_detectors("hog") == ("hog",)
    assert parse_detectors("mmod") == ("cnn",)
    assert parse_detectors(" HOG , cnn ") == ("hog", "cnn")
    cases = (("mtcnn", "unknown face detector 'mtcnn'"), ("hog,hog", "named twice"), ("", "unknown"))
    for bad, what in cases:
        with pytest.raises(ValueError, match=what):
            parse_detectors(bad)
    with pytest.raises(ValueError, match="face selection"):
        DlibBackend(select="biggest")


def test_each_detector_records_name_version_and_weights(hog: DlibBackend, cnn: DlibBackend,
                                                        chain: DlibBackend) -> None:
    for backend, detector, models in ((hog, "hog", {"predictor"}), (cnn, "cnn", {"predictor", "cnn"}),
                                      (chain, "hog,cnn", {"predictor", "cnn"})):
        settings = backend.settings()
        assert settings["detector"] == detector
        info = BackendInfo.from_settings(settings)  # what the dataset info keeps
        assert info.name == "dlib" and info.version == dlib.__version__
        assert set(info.model_sha256) == models
        assert info.model_sha256["predictor"] == _sha("shape_68")
        if "cnn" in models:
            assert info.model_sha256["cnn"] == _sha("cnn_detector")
    # the default settings have no key that older datasets lack (they keep resuming)
    assert "select" not in hog.settings() and "cnn_box_to_hog" not in hog.settings()
    assert get_landmark_backend("dlib", select="largest").settings()["select"] == "largest"


def test_hog_and_cnn_agree_on_fixture_frames(hog: DlibBackend, cnn: DlibBackend, grid_root: Path,
                                             voxceleb_root: Path) -> None:
    """Mean distance between the two detectors' 68 points, frames not used to calibrate the CNN box."""
    frames = [read_video(grid_root / "s1" / name)[40] for name in ("bbaf2n.mpg", "bwat2n.mpg", "lbbe1s.mpg")]
    vox = read_video(voxceleb_root / "00098.mp4")
    frames += [vox[i] for i in (10, 130)]
    dists = []
    for frame in frames:
        a, b = hog.detect(frame), cnn.detect(frame)
        assert a is not None and b is not None
        dists.append(float(np.linalg.norm(a - b, axis=1).mean()))
    # Measured: 0.57, 0.85, 0.57, 0.58, 1.24 px (mean 0.76). bwat2n in the raw CNN box: 13 px (the
    # mouth on the nose); the box mapping and re-box fix it (dlib_backend.DlibBackend._landmarks).
    assert np.mean(dists) < 1.2 and max(dists) < 2.0, dists


@pytest.mark.parametrize(
    "image",
    [np.zeros((200, 240, 3), np.uint8),
     np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8)],
    ids=["black", "noise"],
)
def test_no_face_with_every_detector(cnn: DlibBackend, chain: DlibBackend, image: np.ndarray) -> None:
    for backend in (cnn, chain):
        assert backend.detect(image) is None
        track = backend.track(iter([image, image]))
        assert not track.face_found.any() and np.isnan(track.points).all()
        assert not track.info.get("detected_by_cnn")


def test_chain_retries_missed_frames_with_cnn(hog: DlibBackend, chain: DlibBackend, grid_root: Path) -> None:
    """Low-light frames HOG misses (even upsampled) are found by the CNN, on those frames only."""
    clip = read_video(grid_root / "s1" / "bbaf2n.mpg")
    frames = [clip[40], clip[41], _dark(clip[42], 1), _dark(clip[43], 2)]
    hog_track = get_landmark_backend("dlib", detect_interval=1).track(iter(frames))
    assert hog_track.face_found.tolist() == [True, True, False, False]
    track = chain.track(iter(frames))
    assert track.face_found.all() and track.detected.all()
    assert track.info == {"detected_by_hog": 2, "detected_by_cnn": 2}
    np.testing.assert_array_equal(track.points[:2], hog_track.points[:2])  # HOG frames untouched
    # The dark frames' points against HOG's on the clean frames: measured 6.5 and 7.2 px (eye distance
    # 47 px); the predictor itself is 4.2-4.4 px off on these dark frames even in HOG's clean box.
    clean = np.stack([hog.detect(clip[42]), hog.detect(clip[43])])
    err = np.linalg.norm(track.points[2:] - clean, axis=2).mean()
    assert err < 9.0, err


def _two_faces(big: np.ndarray, small: np.ndarray, small_left: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """Two frames side by side on black; returns the canvas and the big frame's x range."""
    h = max(big.shape[0], small.shape[0])
    canvas = np.zeros((h, big.shape[1] + small.shape[1], 3), np.uint8)
    x_big = small.shape[1] if small_left else 0
    x_small = 0 if small_left else big.shape[1]
    canvas[: big.shape[0], x_big: x_big + big.shape[1]] = big
    canvas[: small.shape[0], x_small: x_small + small.shape[1]] = small
    return canvas, (x_big, x_big + big.shape[1])


@pytest.mark.parametrize("small_left", [False, True])
def test_largest_face_is_chosen_and_counted(grid_root: Path, voxceleb_root: Path, small_left: bool) -> None:
    """Two people in the frame: ``select="largest"`` tracks the larger face, whichever scores higher
    (the 1.6x VoxCeleb-style face scores 0.8 beside the small GRID face's 2.1), and counts the frames."""
    grid = read_video(grid_root / "s1" / "bbaf2n.mpg")[40:43]
    vox = read_video(voxceleb_root / "00015.mp4")[40:43]
    largest = get_landmark_backend("dlib", select="largest")
    pairs = (
        [(g, cv2.resize(v, None, fx=0.75, fy=0.75)) for g, v in zip(grid, vox, strict=True)],
        [(cv2.resize(v, None, fx=1.6, fy=1.6), cv2.resize(g, None, fx=0.6, fy=0.6))
         for g, v in zip(grid, vox, strict=True)],
    )
    for layout, pair in enumerate(pairs):
        built = [_two_faces(big, small, small_left) for big, small in pair]
        track = largest.track(iter([canvas for canvas, _ in built]))
        assert track.face_found.all()
        assert track.info.get("multiple_faces", 0) >= 1  # the detector saw both faces
        x0, x1 = built[0][1]
        xs = track.points[:, :, 0]
        assert (xs > x0).all() and (xs < x1).all()
        if layout == 1:  # the default keeps the best-scoring face instead: here the small one
            best = get_landmark_backend("dlib").track(iter([canvas for canvas, _ in built]))
            assert ((best.points[:, :, 0] < x0) | (best.points[:, :, 0] > x1)).all()
