"""Retargeting: identity + s R (final - anchor), (s, R) fitted on stable points; the closed-mouth anchor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.core.alignment import load_template
from talkface.models.retarget import (
    MOUTH_SCALE_BOUNDS,
    SPEECH_POINTS,
    fit_motion_transform,
    mouth_opening,
    rest_anchor,
    retarget,
)


def _motion(seed: int, t: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.zeros((t, 68, 2))
    m[:, 48:68] = rng.normal(scale=2.0, size=(t, 20, 2))  # the mouth moves
    return m


def test_identity_equal_to_mean_face_returns_input() -> None:
    mean = load_template(128).astype(np.float64)
    final = mean + _motion(0)
    np.testing.assert_allclose(retarget(final, mean, mean), final, atol=1e-4)


def test_zero_motion_keeps_identity_interocular_distance_and_jaw() -> None:
    mean = load_template(128).astype(np.float64)
    rng = np.random.default_rng(1)
    identity = mean * 1.3 + rng.normal(scale=1.5, size=mean.shape) + 7.0  # another face shape
    out = retarget(np.repeat(mean[None], 4, axis=0), mean, identity)
    for frame in out:
        np.testing.assert_allclose(frame[0:17], identity[0:17], atol=1e-4)  # jaw exactly
        iod = np.linalg.norm(frame[36:42].mean(0) - frame[42:48].mean(0))
        assert abs(iod - np.linalg.norm(identity[36:42].mean(0) - identity[42:48].mean(0))) < 1e-4


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.5, 2.0), angle=st.floats(-0.5, 0.5), tx=st.floats(-20, 20), seed=st.integers(0, 99))
def test_motion_follows_a_known_similarity(scale: float, angle: float, tx: float, seed: int) -> None:
    """An identity that is an exact similarity of the mean face gets the motion scaled and rotated by
    exactly that similarity (hand-built s R, independent of the fitting code)."""
    mean = load_template(128).astype(np.float64)
    sr = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    identity = mean @ sr.T + np.array([tx, -tx / 2])
    motion = _motion(seed)
    out = retarget(mean + motion, mean, identity)
    np.testing.assert_allclose(out, identity + motion @ sr.T, atol=1e-3)
    np.testing.assert_allclose(fit_motion_transform(mean, identity), sr, atol=1e-6)


def _open_mouth(face: np.ndarray, gap: float) -> np.ndarray:
    """The face with its lower lip (outer 55-59, inner 65-67) and chin moved down by ``gap``."""
    out = face.copy()
    out[[55, 56, 57, 58, 59, 65, 66, 67, 6, 7, 8, 9, 10], 1] += gap
    return out


def test_mouth_opening_by_hand() -> None:
    face = load_template(128).astype(np.float64)
    width = np.linalg.norm(face[48] - face[54])
    gap0 = np.mean([np.linalg.norm(face[a] - face[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
    opened = _open_mouth(face, 4.0)
    # the inner-lip pairs are vertical in the template, so 4 px down adds 4 px to each gap
    assert mouth_opening(opened[None])[0] == pytest.approx((gap0 + 4.0) / width, rel=1e-3)


def test_rest_anchor_is_the_closed_mouth_so_a_closed_identity_is_reproduced() -> None:
    """A sequence that closes its mouth in some frames: the anchor takes jaw and mouth from those
    frames (the rest from the mean face), so retargeting onto an identity with a closed mouth gives
    the identity exactly at the closed frames and opens from there (the mean-face anchor opens less)."""
    mean = load_template(128).astype(np.float64)
    gaps = np.array([0, 0, 3, 6, 9, 6, 3, 0, 0, 6], np.float64)  # 4 of 10 frames closed
    seq = np.stack([_open_mouth(mean, g) for g in gaps])
    anchor = rest_anchor(seq, seq.mean(axis=0), fraction=0.3)
    np.testing.assert_allclose(anchor[SPEECH_POINTS], mean[SPEECH_POINTS], atol=1e-9)
    rest = np.setdiff1d(np.arange(68), SPEECH_POINTS)
    np.testing.assert_allclose(anchor[rest], seq.mean(axis=0)[rest], atol=1e-9)
    identity = mean * 1.1 + 3.0  # a closed mouth, another scale
    out = retarget(seq, anchor, identity)
    np.testing.assert_allclose(out[gaps == 0], np.repeat(identity[None], 4, 0), atol=1e-3)
    lip = out[:, 66, 1] - identity[66, 1]
    np.testing.assert_allclose(lip, 1.1 * gaps, atol=1e-3)  # the gap, scaled to the identity
    from_mean = retarget(seq, seq.mean(axis=0), identity)[:, 66, 1] - identity[66, 1]
    assert np.all(from_mean < lip - 1.0)  # the mean-face anchor closes every mouth by the mean gap


def test_rest_anchor_of_a_still_or_empty_sequence_is_the_mean_face() -> None:
    mean = load_template(128).astype(np.float64)
    np.testing.assert_allclose(rest_anchor(np.repeat(mean[None], 5, 0), mean), mean)
    np.testing.assert_allclose(rest_anchor(np.full((3, 68, 2), np.nan), mean), mean)


@pytest.mark.parametrize("mouth", [0.8, 1.25, 0.3])
def test_a_mouth_of_another_size_moves_in_proportion(mouth: float) -> None:
    """An identity that is the mean face scaled by 1.2 with its mouth region shrunk or grown about its
    centre by ``mouth``: the face similarity is the 1.2 scale (fitted on nose and eyes, untouched), and
    jaw and mouth displacements come out scaled by 1.2 x ``mouth`` (clipped to the bounds), the other
    points by 1.2 alone; with ``scale_mouth=False`` by 1.2 everywhere (numbers built by hand)."""
    mean = load_template(128).astype(np.float64)
    identity = mean * 1.2 + 5.0
    centre = identity[48:68].mean(axis=0)
    identity[48:68] = centre + (identity[48:68] - centre) * mouth
    motion = _motion(3)
    motion[:, 8] = [0.0, 2.5]  # the chin drops too
    motion[:, 30] = [0.4, -0.3]  # the nose tip moves a little
    out = retarget(mean + motion, mean, identity)
    k = float(np.clip(mouth, *MOUTH_SCALE_BOUNDS))
    expected = identity + 1.2 * motion
    expected[:, SPEECH_POINTS] = identity[SPEECH_POINTS] + 1.2 * k * motion[:, SPEECH_POINTS]
    np.testing.assert_allclose(out, expected, atol=1e-3)
    np.testing.assert_allclose(retarget(mean + motion, mean, identity, scale_mouth=False),
                               identity + 1.2 * motion, atol=1e-3)
