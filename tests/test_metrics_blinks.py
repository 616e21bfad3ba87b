"""Blinks: exact counts and durations on a synthetic EAR trace, EAR by hand, a physiological rate on GRID."""

from __future__ import annotations

import numpy as np
import pytest

from talkface.evaluate.metrics import detect_blinks, eye_aspect_ratio, get_metric
from talkface.evaluate.metrics.base import ClipSample


def test_eye_aspect_ratio_hand_computed() -> None:
    eye = np.array([[0, 0], [2, -1], [4, -1], [6, 0], [4, 1], [2, 1]], float)  # p1..p6
    pts = np.zeros((1, 68, 2))
    pts[0, 36:42] = eye
    pts[0, 42:48] = eye * np.array([1, 2])  # vertical distances doubled: EAR 2/3
    # (|p2-p6| + |p3-p5|) / (2 |p1-p4|) = (2 + 2) / 12 = 1/3 for the right eye
    assert eye_aspect_ratio(pts)[0] == pytest.approx((1 / 3 + 2 / 3) / 2)


def _trace() -> np.ndarray:
    ear = np.full(250, 0.30)  # 10 s at 25 fps
    ear[20:24] = 0.10  # 4 frames
    ear[100:103] = 0.12  # 3 frames
    ear[180:185] = 0.08  # 5 frames
    ear[60] = 0.05  # a 1-frame dip: shorter than min_frames, not a blink
    ear[140] = np.nan  # no landmarks: never closed
    return ear


def test_synthetic_trace_gives_exact_blinks() -> None:
    stats = detect_blinks(_trace(), fps=25.0)
    assert stats.threshold == pytest.approx(0.75 * 0.30)
    assert stats.starts.tolist() == [20, 100, 180]
    assert stats.lengths.tolist() == [4, 3, 5]
    assert stats.rate_per_min == pytest.approx(3 / (10 / 60))
    assert stats.mean_duration_s == pytest.approx((4 + 3 + 5) / 3 / 25)
    assert stats.mean_interval_s == pytest.approx((80 + 80) / 2 / 25)
    assert detect_blinks(_trace(), fps=25.0, min_frames=1).count == 4
    assert detect_blinks(_trace(), fps=25.0, threshold=0.11).count == 2  # only the 0.10 and 0.08 runs


def test_blink_metrics_report_reference_value() -> None:
    ear = _trace()
    pts = np.zeros((250, 68, 2))
    for eye in (np.arange(36, 42), np.arange(42, 48)):
        pts[:, eye[0]] = [0, 0]
        pts[:, eye[3]] = [6, 0]
        half = ear * 6 / 2  # each pair spans 2 * half = 6 * ear, so EAR = 2 * 6 * ear / (2 * 6) = ear
        pts[:, eye[1]] = np.stack([np.full(250, 2), -half], 1)
        pts[:, eye[5]] = np.stack([np.full(250, 2), half], 1)
        pts[:, eye[2]] = np.stack([np.full(250, 4), -half], 1)
        pts[:, eye[4]] = np.stack([np.full(250, 4), half], 1)
    np.testing.assert_allclose(eye_aspect_ratio(pts), ear)
    frames = np.zeros((250, 4, 4, 3), np.uint8)
    still = pts.copy()
    still[:] = pts[0]
    sample = ClipSample("c", frames, 25.0, landmarks=pts, ref_landmarks=still)
    rate = get_metric("blink_rate").score(sample)
    assert rate.value == pytest.approx(18.0)
    assert rate.details["reference_value"] == 0.0
    assert get_metric("blink_duration").score(sample).value == pytest.approx(0.16)
    assert get_metric("blink_interval").score(sample).value == pytest.approx(3.2)
    assert get_metric("blink_rate").higher_is_better is None


# Spontaneous blink rates of adults range from about 2 to 50 per minute across studies and tasks
# (Doughty 2001; Bentivoglio et al. 1997: mean 17 at rest, 26 in conversation, 4.5 reading).
PHYSIOLOGICAL_RANGE = (2.0, 50.0)


def test_grid_s1_rate_is_physiological(prepared_grid) -> None:
    from talkface.store.dataset_writer import DatasetStore

    store = DatasetStore(prepared_grid)
    manifest = store.read_manifest()
    ok = manifest[manifest["status"] == "ok"]
    blinks, minutes = 0, 0.0
    for clip_id, fps in zip(ok["clip_id"], ok["fps"], strict=True):
        stats = detect_blinks(eye_aspect_ratio(store.load_clip(clip_id)["landmarks"]), fps=float(fps))
        blinks += stats.count
        minutes += stats.duration_min
    rate = blinks / minutes
    print(f"GRID s1 fixture blink rate: {rate:.1f}/min ({blinks} blinks in {minutes * 60:.0f} s)")
    assert PHYSIOLOGICAL_RANGE[0] <= rate <= PHYSIOLOGICAL_RANGE[1]
