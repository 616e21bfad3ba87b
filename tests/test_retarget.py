"""Retargeting: identity + s R (final - mean_face), (s, R) fitted on stable points."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.models.retarget import fit_motion_transform, retarget
from talkface.preprocess.alignment import load_template


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
