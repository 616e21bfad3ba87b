"""Similarity estimation, template, alignment and crops: known transforms and independent references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from talkface.core.alignment import (
    OUTER_EYE_CORNERS,
    STABLE_POINTS,
    align_landmarks,
    apply_transform,
    estimate_similarity,
    load_template,
    template_info,
    warp_crop,
)


def _similarity(scale: float, angle: float, tx: float, ty: float) -> tuple[np.ndarray, np.ndarray]:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return scale * rot, np.array([tx, ty])


@pytest.mark.parametrize("seed", range(5))
def test_recovers_known_random_similarity(seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 300, size=(13, 2))
    scale, angle = rng.uniform(0.2, 3.0), rng.uniform(-np.pi, np.pi)
    lin, t = _similarity(scale, angle, *rng.uniform(-100, 100, 2))
    dst = np.array([lin @ p + t for p in src])  # applied point by point, independently of the code
    m = estimate_similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], lin, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-7)
    np.testing.assert_allclose(apply_transform(src, m), dst, atol=1e-3)


def test_matches_scikit_image_on_noisy_points() -> None:
    rng = np.random.default_rng(7)
    src = rng.uniform(0, 200, size=(20, 2))
    lin, t = _similarity(1.3, 0.4, 5.0, -8.0)
    dst = src @ lin.T + t + rng.normal(scale=2.0, size=src.shape)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        ref = SimilarityTransform.from_estimate(src, dst)
    else:
        ref = SimilarityTransform()
        ref.estimate(src, dst)
    np.testing.assert_allclose(estimate_similarity(src, dst), ref.params[:2], atol=1e-8)


def test_never_returns_a_reflection() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(-1, 1, size=(10, 2))
    dst = src * np.array([-1.0, 1.0])  # a mirror image: the best rotation must still be a rotation
    m = estimate_similarity(src, dst)
    assert np.linalg.det(m[:, :2]) > 0


def test_apply_transform_stack_and_hand_case() -> None:
    quarter = np.array([[0.0, -1.0, 10.0], [1.0, 0.0, 0.0]])  # 90 degrees, then x + 10
    assert apply_transform(np.array([[1.0, 0.0]]), quarter).tolist() == [[10.0, 1.0]]
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(4, 68, 2))
    tfs = rng.normal(size=(4, 2, 3))
    stacked = apply_transform(pts, tfs)
    for i in range(4):
        np.testing.assert_allclose(stacked[i], apply_transform(pts[i], tfs[i]), atol=1e-5)


def test_template_geometry_and_provenance() -> None:
    unit = load_template(1)
    assert unit.shape == (68, 2) and unit.dtype == np.float32
    assert unit.min() > 0.05 and unit.max() < 0.95  # whole face (jaw, brows) inside with a margin
    info = template_info()
    iod = info["normalisation"]["outer_eye_corner_distance"]
    a, b = OUTER_EYE_CORNERS
    assert np.linalg.norm(unit[b] - unit[a]) == pytest.approx(iod, abs=1e-5)
    left, right = unit[36:42].mean(0), unit[42:48].mean(0)
    assert abs(left[1] - right[1]) < 1e-5 and left[0] < right[0]  # eye line horizontal, not mirrored
    assert unit[8, 1] > unit[30, 1] > unit[27, 1] > unit[19, 1]  # chin below nose below brows
    assert len(info["speakers"]) == 5
    np.testing.assert_allclose(load_template(256), unit * 256, rtol=1e-6)


def test_align_recovers_template_from_transformed_copies() -> None:
    crop = 128
    template = load_template(crop).astype(np.float64)
    frames, inverses = [], []
    for i in range(7):
        lin, t = _similarity(2.0 + 0.1 * i, 0.05 * i, 40.0 + i, 30.0)  # crop -> source
        frames.append(template @ lin.T + t)
        inv = np.linalg.inv(lin)
        inverses.append(np.hstack([inv, (-inv @ t)[:, None]]))
    points = np.stack(frames).astype(np.float32)
    points[3] = np.nan  # a frame without a face
    transforms, aligned = align_landmarks(points, crop, smooth_window=1)
    assert np.isnan(transforms[3]).all() and np.isnan(aligned[3]).all()
    for i in (0, 1, 2, 4, 5, 6):
        np.testing.assert_allclose(transforms[i], inverses[i], atol=1e-4)
        np.testing.assert_allclose(aligned[i], template, atol=1e-3)


def test_warp_crop_moves_a_dot_where_the_transform_says() -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[40, 90] = 255  # a single bright pixel at (x=90, y=40)
    lin, t = _similarity(1.0, np.pi / 6, -20.0, -30.0)  # (90, 40) -> (37.9, 49.6)
    m = np.hstack([lin, t[:, None]])
    crop = warp_crop(frame, m, 96)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    y, x = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    expected = apply_transform(np.array([[90.0, 40.0]]), m)[0]
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1
    with pytest.raises(ValueError):
        warp_crop(frame, np.full((2, 3), np.nan), 96)


def test_aligned_landmarks_agree_with_detection_on_the_crop(grid_root: Path) -> None:
    """Independent check of transform + warp: detect again on the warped crop itself."""
    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video

    frames = read_video(grid_root / "s1" / "bbaf2n.mpg")[::15]
    backend = get_landmark_backend("dlib")
    points = np.stack([backend.detect(f) for f in frames])
    crop = 256  # the HOG detector needs faces of ~80 px and larger
    transforms, aligned = align_landmarks(points, crop, smooth_window=1)
    for frame, tf, expect in zip(frames, transforms, aligned, strict=True):
        again = backend.detect(warp_crop(frame, tf, crop))
        assert again is not None
        assert np.linalg.norm(again - expect, axis=-1).mean() < 3.0  # px at 256; dlib's own spread
    iod = np.linalg.norm(aligned[:, 45] - aligned[:, 36], axis=-1)
    template_iod = np.linalg.norm(load_template(crop)[45] - load_template(crop)[36])
    assert np.all(np.abs(iod / template_iod - 1) < 0.05)
    assert set(STABLE_POINTS) >= {36, 39, 42, 45}
