"""LMD against hand-computed cases and the properties the definition implies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.evaluate.metrics import get_metric, lmd
from talkface.evaluate.metrics.base import ClipSample
from talkface.evaluate.metrics.lmd import lmd_frames


def _face(seed: int = 0, t: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(20, 108, (t, 68, 2))


def _ring_mouth(radius: float, centre=(64.0, 90.0)) -> np.ndarray:
    """A face whose 20 mouth points lie on a circle of ``radius`` around their centroid."""
    face = _face(1, 1)
    ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    face[0, 48:68] = np.stack([centre[0] + radius * np.cos(ang), centre[1] + radius * np.sin(ang)], axis=1)
    return face


def test_identical_is_zero() -> None:
    f = _face()
    assert lmd(f, f) == 0.0
    assert lmd(f, f, points="face", reduction="sum") == 0.0


def test_one_mouth_point_moved_hand_computed() -> None:
    ref = _face(2, 1)
    pred = ref.copy()
    pred[0, 48, 0] += 20.0
    # the mouth centroid moves by 20/20 = 1 px in x: point 48 is off by 19, the other 19 by 1
    assert lmd(pred, ref) == pytest.approx((19 + 19 * 1) / 20)
    assert lmd(pred, ref, reduction="sum") == pytest.approx(38.0)
    # whole face: centroid moves 20/68; point 48 off by 20 - 20/68, the other 67 by 20/68
    assert lmd(pred, ref, points="face") == pytest.approx(((20 - 20 / 68) + 67 * (20 / 68)) / 68)


def test_scaled_mouth_hand_computed() -> None:
    ref = _ring_mouth(10.0)
    centre = ref[0, 48:68].mean(axis=0)
    pred = ref.copy()
    pred[0, 48:68] = centre + 1.2 * (ref[0, 48:68] - centre)
    assert lmd(pred, ref) == pytest.approx(0.2 * 10.0)
    assert lmd(pred, ref, reduction="sum") == pytest.approx(20 * 0.2 * 10.0)


def test_whole_mouth_shift_is_removed_by_centroid_alignment() -> None:
    ref = _face(3)
    pred = ref.copy()
    pred[:, 48:68] += np.array([7.0, -3.0])
    assert lmd(pred, ref) == pytest.approx(0.0, abs=1e-12)
    assert lmd(pred, ref, points="face") > 0  # the mouth moved relative to the rest of the face


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 10_000),
    st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=4, max_size=4),
)
def test_translation_invariance_and_sum_is_20x_mean(seed: int, shifts) -> None:
    ref = _face(seed, 4)
    pred = ref + np.random.default_rng(seed + 1).normal(0, 2, ref.shape)
    moved = pred + np.array(shifts)[:, None, :]  # a different translation per frame
    mean = lmd_frames(pred, ref)
    np.testing.assert_allclose(lmd_frames(moved, ref), mean, atol=1e-9)
    np.testing.assert_allclose(lmd_frames(pred, ref, reduction="sum"), 20 * mean, rtol=1e-12)


def test_metric_class_skips_frames_without_landmarks() -> None:
    ref = _face(4, 3)
    pred = ref.copy()
    pred[1, 48, 0] += 20.0
    pred[2] = np.nan
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    res = get_metric("lmd_mouth").score(ClipSample("c", frames, 25.0, landmarks=pred, ref_landmarks=ref))
    assert res.value == pytest.approx((0 + 1.9) / 2)
    assert res.details["frames_without_landmarks"] == 1
    assert get_metric("lmd_face:centroid-sum").variant == "centroid-sum"
    assert get_metric("lmd_mouth").higher_is_better is False
