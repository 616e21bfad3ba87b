"""Gap filling and zero-phase smoothing of landmark tracks, checked on hand-computable signals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import savgol_coeffs

from talkface.core.landmarks.temporal import fill_gaps, smooth_landmarks, smoothing_settings


def _track(signal: np.ndarray) -> np.ndarray:
    """A (T, 68, 2) track whose every coordinate follows ``signal``."""
    return np.repeat(signal.astype(np.float32)[:, None, None], 68, axis=1).repeat(2, axis=2)


def test_fill_gaps_interpolates_short_gaps_linearly() -> None:
    t = np.arange(10, dtype=np.float32)
    pts = _track(3.0 * t + 1.0)  # a straight line: interpolation must reproduce it exactly
    found = np.ones(10, bool)
    found[[3, 4]] = False
    pts[[3, 4]] = np.nan
    out = fill_gaps(pts, found, max_gap=2)
    np.testing.assert_allclose(out[:, 0, 0], 3.0 * t + 1.0, rtol=0, atol=1e-5)


def test_fill_gaps_leaves_long_and_edge_gaps_nan() -> None:
    pts = _track(np.arange(12, dtype=np.float32))
    found = np.ones(12, bool)
    found[[0, 1]] = False  # leading gap: nothing before it
    found[[5, 6, 7, 8]] = False  # 4 frames: longer than max_gap
    found[11] = False  # trailing gap
    out = fill_gaps(pts, found, max_gap=3)
    assert np.isnan(out[[0, 1, 5, 6, 7, 8, 11]]).all()
    np.testing.assert_array_equal(out[[2, 3, 4, 9, 10]], pts[[2, 3, 4, 9, 10]])


def test_fill_gaps_marks_not_found_frames_even_if_points_present() -> None:
    pts = _track(np.arange(6, dtype=np.float32))
    pts[2] = 100.0  # garbage points on a frame the detector flagged as faceless
    found = np.array([1, 1, 0, 1, 1, 1], bool)
    out = fill_gaps(pts, found, max_gap=1)
    assert out[2, 0, 0] == pytest.approx(2.0)


def test_smoothing_has_no_lag_on_a_sine() -> None:
    t = np.arange(200)
    sig = np.sin(2 * np.pi * 2.0 * t / 25.0)  # 2 Hz at 25 fps: mouth-rate motion
    out = smooth_landmarks(_track(sig))[:, 0, 0]
    # Lag = shift maximising the cross-correlation; a zero-phase filter gives exactly 0.
    core = slice(20, 180)
    lags = list(range(-5, 6))
    corr = [float(np.dot(out[core], np.roll(sig, k)[core])) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    # The centred filter's gain at 2 Hz is close to 1, so the mouth keeps its amplitude.
    assert np.abs(out[core]).max() > 0.9


def test_step_midpoint_stays_in_place() -> None:
    sig = np.r_[np.zeros(20), np.ones(20)]
    out = smooth_landmarks(_track(sig))[:, 0, 0]
    # Symmetric weights: the smoothed step is antisymmetric about the edge (between frames 19 and 20),
    # so out[19 - k] + out[20 + k] == 1. A causal filter would move the edge later.
    for k in range(4):
        assert out[19 - k] + out[20 + k] == pytest.approx(1.0, abs=1e-6)


def test_savgol_weights_match_scipy_reference_inside_segment() -> None:
    rng = np.random.default_rng(0)
    sig = rng.normal(size=30)
    out = smooth_landmarks(_track(sig), window=5, polyorder=2)[:, 0, 0]
    c = savgol_coeffs(5, 2)  # centred least-squares polynomial weights
    for i in range(2, 28):
        assert out[i] == pytest.approx(float(np.dot(c, sig[i - 2 : i + 3])), abs=1e-5)


def test_smoothing_reduces_jitter_on_still_segment() -> None:
    rng = np.random.default_rng(1)
    still = 50.0 + rng.normal(scale=0.5, size=(100, 68, 2))
    out = smooth_landmarks(still.astype(np.float32))
    jitter_in = np.linalg.norm(np.diff(still, axis=0), axis=-1).mean()
    jitter_out = np.linalg.norm(np.diff(out, axis=0), axis=-1).mean()
    assert jitter_out < 0.6 * jitter_in


def test_smoothing_does_not_smear_across_nan_gap() -> None:
    sig = np.r_[np.zeros(10), np.full(3, np.nan), np.full(10, 100.0)]
    out = smooth_landmarks(_track(sig))[:, 0, 0]
    assert np.isnan(out[10:13]).all()
    np.testing.assert_allclose(out[:10], 0.0, atol=1e-5)
    np.testing.assert_allclose(out[13:], 100.0, atol=1e-4)


def test_short_segments_and_bad_windows() -> None:
    sig = np.r_[np.array([1.0, 5.0]), np.nan, np.arange(4.0)]
    out = smooth_landmarks(_track(sig))[:, 0, 0]
    np.testing.assert_allclose(out[:2], [1.0, 5.0])  # too short to fit a quadratic: unchanged
    np.testing.assert_allclose(out[3:], np.arange(4.0), atol=1e-5)  # a line passes unchanged
    with pytest.raises(ValueError):
        smooth_landmarks(_track(np.zeros(10)), window=4)
    assert smoothing_settings()["filter"].startswith("savitzky-golay")
