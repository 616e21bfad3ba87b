"""CPBD: hand-built edges with known widths, blur monotonicity, and the `cpbd` 1.0.7 package as reference."""

from __future__ import annotations

import importlib
import sys

import cv2
import numpy as np
import pytest

from talkface.evaluate.metrics import cpbd, get_metric
from talkface.evaluate.metrics._image import to_gray_u8
from talkface.evaluate.metrics.base import ClipSample
from talkface.evaluate.metrics.cpbd import edge_widths, pblur_histogram


def _edge_image() -> tuple[np.ndarray, dict[int, float]]:
    """192x128 image, one vertical transition per 64-px block column, each a strictly monotone run
    with a single steepest pixel (so thinning keeps exactly one edge pixel per row):

    - col 0: rises 0 -> 40 over 4 px (contrast 40 -> w_JNB 5): P_BLUR = 1 - exp(-(4/5)^3.6) -> bin 36
    - col 1: rises 40 -> 160 over 6 px (contrast 120 -> w_JNB 3): P = 1 - exp(-2^3.6) -> bin 100
    - col 2: falls 160 -> 130 over 5 px (contrast 30 -> w_JNB 5): P = 1 - exp(-1) = 0.632 -> bin 63
    """
    row = np.zeros(192)
    row[:] = 0
    row[30:33] = [5, 20, 35]
    row[33:] = 40
    row[95:100] = [50, 70, 100, 130, 150]
    row[100:] = 160
    row[160:164] = [158, 152, 141, 134]
    row[164:] = 130
    expected_bins = {
        int(round(100 * (1 - np.exp(-((4 / 5) ** 3.6))))): 1 / 3,
        int(round(100 * (1 - np.exp(-((6 / 3) ** 3.6))))): 1 / 3,
        int(round(100 * (1 - np.exp(-1.0)))): 1 / 3,
    }
    return np.tile(row, (128, 1)).astype(np.uint8), expected_bins


def test_hand_built_edges_give_predicted_widths_and_histogram() -> None:
    img, expected_bins = _edge_image()
    assert sorted(expected_bins) == [36, 63, 100]
    widths = edge_widths(img)
    # one measured edge per row (rows 1..126) per transition, at the steepest pixel
    assert set(np.unique(widths[1:-1])) == {0.0, 4.0, 5.0, 6.0}
    np.testing.assert_array_equal(np.count_nonzero(widths, axis=1)[1:-1], 3)
    assert (widths[1:-1, 31] == 4).all() and (widths[1:-1, 97] == 6).all() and (widths[1:-1, 162] == 5).all()
    hist = pblur_histogram(img)
    expected = np.zeros(101)
    for b, share in expected_bins.items():
        expected[b] = share
    np.testing.assert_allclose(hist, expected, atol=1e-12)
    assert cpbd(img) == pytest.approx(2 / 3)  # bins 36 and 63 are <= 0.63, bin 100 is not


def test_small_images_score_zero() -> None:
    rng = np.random.default_rng(0)
    assert cpbd(rng.integers(0, 256, (63, 200)).astype(np.uint8)) == 0.0
    assert cpbd(rng.integers(0, 256, (200, 63)).astype(np.uint8)) == 0.0
    assert cpbd(np.full((128, 128), 90, np.uint8)) == 0.0  # no edges at all


@pytest.fixture(scope="module")
def grid_gray(grid_root) -> list[np.ndarray]:
    from talkface.preprocess.media import read_video

    clips = sorted((grid_root / "s1").glob("*.mpg"))
    full = [to_gray_u8(read_video(clips[i])[30]) for i in (0, 60)]
    crop = to_gray_u8(
        cv2.resize(read_video(clips[100])[40][40:264, 70:294], (256, 256), interpolation=cv2.INTER_AREA)
    )
    face = to_gray_u8(read_video(clips[20])[10][80:208, 120:248])  # 128x128 face crop
    return [*full, crop, face]


def test_sharp_frame_beats_its_blurred_copies_monotonically(grid_gray) -> None:
    frame = grid_gray[2]
    scores = [cpbd(frame)] + [cpbd(cv2.GaussianBlur(frame, (0, 0), s)) for s in (0.8, 1.2, 1.8, 2.5)]
    assert all(a > b for a, b in zip(scores[:-1], scores[1:], strict=True)), scores


@pytest.fixture(scope="module")
def reference_cpbd():
    """The `cpbd` 1.0.7 package, importable on current SciPy by giving it the `imread` it imports
    (it is never used by `compute`). Test-only: talkface does not use or ship this code."""
    pytest.importorskip("skimage")
    import scipy.ndimage

    added = not hasattr(scipy.ndimage, "imread")
    if added:
        scipy.ndimage.imread = lambda *a, **k: None  # type: ignore[attr-defined]
    try:
        sys.modules.pop("cpbd", None)
        module = importlib.import_module("cpbd")
    except ImportError:
        pytest.skip("cpbd==1.0.7 not installed (pip install cpbd==1.0.7 --no-deps)")
    finally:
        if added:
            del scipy.ndimage.imread
    return module


def test_agrees_with_cpbd_package_on_fixture_frames(grid_gray, reference_cpbd) -> None:
    for img in grid_gray:
        assert cpbd(img) == pytest.approx(reference_cpbd.compute(img), abs=1e-3)
    img, _ = _edge_image()
    assert cpbd(img) == pytest.approx(reference_cpbd.compute(img), abs=1e-3)


def test_metric_class_scores_each_frame() -> None:
    img, _ = _edge_image()
    rgb = np.repeat(img[..., None], 3, axis=2)
    frames = np.stack([rgb, cv2.GaussianBlur(rgb, (0, 0), 2.0)])
    res = get_metric("cpbd").score(ClipSample("c", frames, 25.0))
    assert res.per_frame[0] == pytest.approx(2 / 3)
    assert res.per_frame[1] < res.per_frame[0]
    assert res.value == pytest.approx(res.per_frame.mean())


def test_canny_edges_equal_scikit_image(grid_gray) -> None:
    from skimage.feature import canny

    from talkface.evaluate.metrics.cpbd import canny_edges

    img, _ = _edge_image()
    for g in [*grid_gray, img, cv2.GaussianBlur(grid_gray[0], (0, 0), 2.0)]:
        f = g.astype(np.float64)
        np.testing.assert_array_equal(canny_edges(f), canny(f))
