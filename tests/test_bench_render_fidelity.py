"""The render-fidelity benchmark's two measures on hand-built mouths (benchmarks/bench_render_fidelity.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_render_fidelity as bench  # noqa: E402

from talkface.models.retarget import SPEECH_POINTS  # noqa: E402


def _mouths(gaps: np.ndarray, width: float = 40.0) -> np.ndarray:
    """(T, 68, 2) faces whose mouth is ``width`` wide with the inner lips ``gaps`` apart."""
    pts = np.zeros((len(gaps), 68, 2), np.float64)
    pts[:, :, 0] = np.arange(68)  # the points not used stay distinct
    pts[:, 48] = (0.0, 0.0)
    pts[:, 54] = (width, 0.0)
    for top, bottom, x in ((61, 67, 15.0), (62, 66, 20.0), (63, 65, 25.0)):
        pts[:, top] = np.stack([np.full(len(gaps), x), -gaps / 2], axis=1)
        pts[:, bottom] = np.stack([np.full(len(gaps), x), gaps / 2], axis=1)
    return pts


def test_a_mouth_drawn_half_as_open_has_slope_one_half_and_the_bias_of_half_its_opening() -> None:
    gaps = np.array([0.0, 2.0, 4.0, 8.0, 6.0])
    asked, drawn = _mouths(gaps), _mouths(gaps / 2)
    bias, slope = bench.opening_fit(drawn, asked)
    assert slope == pytest.approx(0.5)
    assert bias == pytest.approx(-np.mean(gaps / 2) / 40.0)  # opening = gap / width
    assert bench.opening_fit(asked, asked) == pytest.approx((0.0, 1.0))


def test_opening_fit_skips_frames_without_landmarks_and_needs_motion() -> None:
    gaps = np.array([0.0, 2.0, 4.0, 8.0])
    asked, drawn = _mouths(gaps), _mouths(gaps * 2)
    drawn[1] = np.nan
    assert bench.opening_fit(drawn, asked) == pytest.approx((np.mean(gaps[[0, 2, 3]]) / 40.0, 2.0))
    still = _mouths(np.full(4, 3.0))
    assert all(np.isnan(bench.opening_fit(still, still)))


def test_scaled_motion_scales_jaw_and_mouth_displacements_only() -> None:
    rng = np.random.default_rng(0)
    identity = rng.uniform(20, 100, (68, 2)).astype(np.float32)
    asked = identity[None] + rng.normal(0, 2, (5, 68, 2)).astype(np.float32)
    out = bench.scaled_motion(asked, identity, 1.5)
    moved = asked[:, SPEECH_POINTS] - identity[SPEECH_POINTS]
    np.testing.assert_allclose(out[:, SPEECH_POINTS] - identity[SPEECH_POINTS], 1.5 * moved,
                               rtol=1e-5, atol=1e-4)
    others = np.setdiff1d(np.arange(68), SPEECH_POINTS)
    np.testing.assert_array_equal(out[:, others], asked[:, others])
