"""Closure depth in the blink statistics and the blink stage's sampling amplitude."""

from __future__ import annotations

import numpy as np
import pytest

from talkface.models.blinks import EYES, BlinkConfig, BlinkGenerator, blink_statistics


def _eyes_with_ear(ear: np.ndarray) -> np.ndarray:
    """(T, 12, 2) eye points whose EAR (Soukupova-Cech, both eyes) is exactly ``ear`` per frame.

    Each eye is a 1-wide box: corners at x 0 and 1, lids at +-h/2 at x 1/3 and 2/3, so
    EAR = (|p2-p6| + |p3-p5|) / (2 |p1-p4|) = (h + h) / 2 = h.
    """
    out = np.zeros((len(ear), 12, 2), np.float64)
    for eye in (0, 6):
        out[:, eye + 0] = [0.0, 0.0]
        out[:, eye + 3] = [1.0, 0.0]
        out[:, eye + 1, 0] = out[:, eye + 5, 0] = 1 / 3
        out[:, eye + 2, 0] = out[:, eye + 4, 0] = 2 / 3
        out[:, eye + 1, 1] = out[:, eye + 2, 1] = -ear / 2
        out[:, eye + 5, 1] = out[:, eye + 4, 1] = ear / 2
    return out


def test_closure_depth_is_the_lowest_ear_over_the_median() -> None:
    ear = np.full(50, 0.30)
    ear[10:14] = [0.2, 0.12, 0.15, 0.2]  # blink 1: lowest 0.12 -> depth 0.4
    ear[30:33] = [0.18, 0.06, 0.18]  # blink 2: lowest 0.06 -> depth 0.2
    stats = blink_statistics([_eyes_with_ear(ear)], fps=25.0, threshold=None, rel_threshold=0.75)
    assert stats["n_blinks"] == 2
    assert stats["mean_duration_frames"] == pytest.approx(3.5)
    assert stats["closure_depth"] == pytest.approx(np.median([0.4, 0.2]))


def test_no_blink_has_no_depth() -> None:
    stats = blink_statistics([_eyes_with_ear(np.full(40, 0.3))], fps=25.0, threshold=None)
    assert stats["n_blinks"] == 0 and np.isnan(stats["closure_depth"])


def test_sample_scales_displacements_by_the_amplitude() -> None:
    base = BlinkGenerator(BlinkConfig(scale=0.01, amplitude=1.0))
    scaled = BlinkGenerator(BlinkConfig(scale=0.01, amplitude=1.4))
    scaled.load_state_dict(base.state_dict())
    a, b = base.sample(30, generator_seed=3), scaled.sample(30, generator_seed=3)
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(b, 1.4 * a, rtol=1e-5, atol=1e-7)
    assert EYES == slice(36, 48)
