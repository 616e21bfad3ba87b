"""Blinks: EAR and the blink rule by hand, MMD properties, the generator's interface, a real overfit."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from talkface.models.blinks import (
    BlinkConfig,
    BlinkGenerator,
    blink_statistics,
    closure,
    detect_blinks,
    eye_aspect_ratio,
    hold_closures,
    impose_blinks,
    local_windows,
    point_set,
    rbf_mmd2,
)
from talkface.store.dataset import Dataset
from talkface.train import data as mdata
from talkface.train.blinks import eye_sequences

torch.set_num_threads(1)


def _eye(open_h: float) -> np.ndarray:
    """One eye, 6 points, width 4, lids at +-open_h/2: EAR = open_h / 4 by construction."""
    h = open_h / 2
    return np.array([[0, 0], [1, -h], [3, -h], [4, 0], [3, h], [1, h]], float)


def test_ear_and_blink_rule_by_hand() -> None:
    heights = [1.2, 1.2, 0.4, 0.4, 0.4, 1.2, 0.4, 1.2, 1.2, 0.2, 0.2]  # EAR 0.3 or 0.1 or 0.05
    seq = np.stack([np.concatenate([_eye(h), _eye(h) + [10, 0]]) for h in heights])
    ear = eye_aspect_ratio(seq)
    np.testing.assert_allclose(ear, np.array(heights) / 4)
    # The same function as the evaluation's, given the eyes inside whole 68-point faces.
    from talkface.evaluate.metrics.blinks import eye_aspect_ratio as evaluation_ear

    faces = np.zeros((len(seq), 68, 2))
    faces[:, 36:48] = seq
    np.testing.assert_array_equal(eye_aspect_ratio(faces), evaluation_ear(faces))
    # Runs below 0.2: frames 2-4 (3 frames), frame 6 (1 frame: too short), frames 9-10 (at the end).
    assert detect_blinks(ear, 0.2, 2) == [(2, 5), (9, 11)]
    stats = blink_statistics([seq], fps=25.0)
    assert stats["n_blinks"] == 2
    assert stats["blinks_per_min"] == pytest.approx(2 / (11 / 25 / 60))
    assert stats["mean_duration_frames"] == pytest.approx(2.5)


def test_mmd_properties() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    assert rbf_mmd2(x, x, [0.5, 1.0, 2.0]).abs().item() < 1e-6
    same = rbf_mmd2(x, torch.randn(64, 6, generator=g), [0.5, 1.0, 2.0]).item()
    shifted = rbf_mmd2(x, torch.randn(64, 6, generator=g) + 1.5, [0.5, 1.0, 2.0]).item()
    assert shifted > 5 * abs(same)
    # Hand case: one point each, one bandwidth: 2 - 2 exp(-d^2 / 2 s^2).
    a, b = torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])
    assert rbf_mmd2(a, b, [5.0]).item() == pytest.approx(2 - 2 * np.exp(-25 / 50))
    w = local_windows(torch.arange(10.0).reshape(1, 5, 2), 3)
    assert w.shape == (3, 6) and w[1].tolist() == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(("points", "moved"), [("eyes", np.r_[36:48]), ("eyes+brows", np.r_[17:27, 36:48])])
def test_generator_sample_interface_and_impose(points: str, moved: np.ndarray) -> None:
    gen = BlinkGenerator(BlinkConfig(scale=0.01, hidden=16, rnn_layers=1, points=points)).eval()
    a = gen.sample(50, fps=25.0, generator_seed=3)
    assert a.shape == (50, len(moved), 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, gen.sample(50, fps=25.0, generator_seed=3))  # seeded
    assert not np.array_equal(a, gen.sample(50, fps=25.0, generator_seed=4))
    assert gen.sample(60, fps=30.0).shape == (60, len(moved), 2)
    face = np.random.default_rng(0).random((50, 68, 2)).astype(np.float32)
    out = impose_blinks(face, a)
    still = np.setdiff1d(np.arange(68), moved)
    np.testing.assert_array_equal(out[:, still], face[:, still])
    np.testing.assert_allclose(out[:, moved], face[:, moved].mean(0) + a, atol=1e-6)


def test_config_saved_before_point_sets_loads_as_eyes_from_the_mean() -> None:
    """A checkpoint config without ``points``/``origin`` (before 2026-12-02) is the 12-eye-point model."""
    legacy = {k: v for k, v in asdict(BlinkConfig()).items() if k not in ("points", "origin")}
    cfg = BlinkConfig.from_dict(legacy)
    assert (cfg.points, cfg.origin, cfg.n_points) == ("eyes", "mean", 12)
    assert BlinkConfig().n_points == 22


def test_open_eye_origin_by_hand() -> None:
    """``open-eyes``: displacements start from the mean over the frames with EAR >= the median, so an
    open frame is ~0 and a closed one negative in y for the upper lids; ``mean`` from all frames."""
    open_eye = np.array([[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]], np.float32)  # EAR 2/3
    shut = open_eye * np.array([1, 0.25], np.float32)  # EAR 1/6
    face = np.zeros((4, 68, 2), np.float32)
    for t, eye in enumerate([open_eye, open_eye, open_eye, shut]):
        face[t, 36:42], face[t, 42:48] = eye, eye + [10, 0]
    clip = mdata.ClipArrays(clip_id="c", speaker="s", landmarks=face, valid=np.ones(4, bool),
                            features=np.zeros((4, 1, 1), np.float32), crop_size=128)
    from talkface.train.blinks import origin_shape

    np.testing.assert_allclose(origin_shape(clip, "eyes", "open-eyes")[:6], open_eye)
    np.testing.assert_allclose(origin_shape(clip, "eyes", "mean")[:6], (3 * open_eye + shut) / 4)
    disp = eye_sequences([clip], 4, 1, "eyes", "open-eyes")[0]
    np.testing.assert_allclose(disp[:3], 0.0)
    assert disp[3, 1, 1] == pytest.approx(0.75)  # upper lid point 37 moved down by 0.75


def test_brows_rise_during_real_blinks(prepared_grid: Path) -> None:
    """Why the stage generates the brows too: in real GRID landmarks the brow points move up during
    blinks (measured on the s1 train clips: 1.2 px at 128 px, 3 standard deviations of their motion)."""
    from talkface.evaluate.metrics.blinks import detect_blinks, eye_aspect_ratio

    dataset = Dataset.open(prepared_grid)
    clips = mdata.load_clips(dataset, mdata.training_parts(dataset, None, seed=0).train)
    inside, outside = [], []
    for clip in clips:
        pts = clip.landmarks * clip.crop_size
        stats = detect_blinks(eye_aspect_ratio(np.where(clip.valid[:, None, None], pts, np.nan)), 25.0)
        blink = np.zeros(len(pts), bool)
        for s, n in zip(stats.starts, stats.lengths, strict=True):
            blink[s:s + n] = True
        brow_y = pts[:, 17:27, 1].mean(axis=1) - pts[clip.valid, 17:27, 1].mean()
        inside += list(brow_y[blink & clip.valid])
        outside += list(brow_y[~blink & clip.valid])
    assert len(inside) >= 10
    assert np.mean(inside) < np.mean(outside) - 0.3  # px, up is negative y


def test_generator_overfits_real_eye_sequences(prepared_grid: Path) -> None:
    """MMD between generated and 16 real GRID eye sequences falls at least 3x within 40 steps.

    Measured (seed 0, CPU): the mean of the last 5 losses is 0.54 of the first at step 10, 0.27 at 20,
    0.23 at 40 and 0.21 at 80: the curve is flat after 40 steps."""
    torch.manual_seed(0)
    dataset = Dataset.open(prepared_grid)
    clips = mdata.load_clips(dataset, mdata.training_parts(dataset, None, seed=0).train)
    real = torch.from_numpy(eye_sequences(clips, 40, 20)[:16])
    cfg = BlinkConfig(scale=float(real.std()), hidden=32, rnn_layers=1,
                      bandwidths_seq=[2.0, 4.0, 8.0, 16.0], bandwidths_local=[1.0, 2.0, 4.0, 8.0])
    from talkface.train.blinks import BlinkStage

    stage = BlinkStage.__new__(BlinkStage)
    stage.config = cfg
    gen = BlinkGenerator(cfg)
    opt = torch.optim.Adam(gen.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = stage.mmd_loss(gen.draw(16, 40), real)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < losses[0] / 3, (losses[0], losses[-5:])


def _closing(t: int, frames: dict[int, float], points: str = "eyes+brows") -> np.ndarray:
    """(t, n, 2) displacements: at each frame in ``frames`` the upper lids (37, 38, 43, 44) move down
    and the lower lids (40, 41, 46, 47) up by half the value; the other points stay."""
    idx = list(point_set(points))
    disp = np.zeros((t, len(idx), 2), np.float32)
    for f, v in frames.items():
        for p in (37, 38, 43, 44):
            disp[f, idx.index(p), 1] = v / 2
        for p in (40, 41, 46, 47):
            disp[f, idx.index(p), 1] = -v / 2
        if 19 in idx:
            disp[f, idx.index(19), 1] = v / 4  # a brow moves with it
    return disp


@pytest.mark.parametrize("points", ["eyes+brows", "eyes"])
def test_a_held_closure_lasts_two_frames_longer_and_the_rest_stays(points: str) -> None:
    """By hand: one closure at frame 5 (depth 2) and a half closure at frame 12; closure() is the lid
    gap change; held one frame, frames 4-6 take frame 5's whole pose (brows too) and 11-13 frame 12's,
    every other frame stays as drawn, and the held sequence still closes twice (two separate runs)."""
    disp = _closing(20, {5: 2.0, 12: 1.0}, points)
    expected = np.zeros(20)
    expected[5], expected[12] = 2.0, 1.0
    np.testing.assert_allclose(closure(disp), expected, atol=1e-6)
    np.testing.assert_array_equal(hold_closures(disp, 0), disp)
    held = hold_closures(disp, 1)
    for f in (4, 5, 6):
        np.testing.assert_array_equal(held[f], disp[5])
    for f in (11, 12, 13):
        np.testing.assert_array_equal(held[f], disp[12])
    rest = [f for f in range(20) if f not in (4, 5, 6, 11, 12, 13)]
    np.testing.assert_array_equal(held[rest], disp[rest])
    runs = np.flatnonzero(np.diff(np.r_[0, (closure(held) > 0).astype(int), 0]) == 1)
    assert len(runs) == 2


def test_sample_holds_closures_by_default() -> None:
    """The generator's sample is its raw draw with hold_closures applied (the same seed, hold 0 against
    the default)."""
    g = BlinkGenerator(BlinkConfig(scale=0.01)).eval()
    raw = g.sample(50, 25.0, generator_seed=3, hold=0)
    np.testing.assert_allclose(g.sample(50, 25.0, generator_seed=3), hold_closures(raw, 1), atol=1e-7)
