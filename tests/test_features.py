"""Weight-free speech features and the per-frame windowing, against hand-computed values and psf."""

from __future__ import annotations

import numpy as np
import pytest
import python_speech_features as psf

from talkface.core.features import (
    available_feature_backends,
    get_feature_backend,
    interpolate_to_frames,
    window_frames,
)


def test_window_is_centred_and_zero_padded() -> None:
    per_frame = np.arange(1, 6, dtype=np.float32)[:, None]  # frames 1..5, one feature
    windows = window_frames(per_frame, window=4)  # 2 before, 1 after
    assert windows.shape == (5, 4, 1)
    np.testing.assert_array_equal(windows[0, :, 0], [0, 0, 1, 2])
    np.testing.assert_array_equal(windows[2, :, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(windows[4, :, 0], [3, 4, 5, 0])
    sixteen = window_frames(per_frame, window=16)
    np.testing.assert_array_equal(sixteen[0, 8:13, 0], [1, 2, 3, 4, 5])  # frame k sits at index 8
    assert not sixteen[0, :8].any()


def test_interpolation_matches_numpy_interp_per_column() -> None:
    rng = np.random.default_rng(0)
    seq = rng.standard_normal((50, 3)).astype(np.float32)  # 0.5 s at 100 Hz
    out = interpolate_to_frames(seq, 100.0, n_frames=15, fps=29.97)
    t_src, t_dst = np.arange(50) / 100.0, np.arange(15) / 29.97
    for d in range(3):
        np.testing.assert_allclose(out[:, d], np.interp(t_dst, t_src, seq[:, d]), rtol=1e-5, atol=1e-6)
    # past the end the last value repeats
    tail = interpolate_to_frames(seq, 100.0, n_frames=30, fps=25.0)
    np.testing.assert_allclose(tail[-1], seq[-1], rtol=1e-6)


@pytest.mark.parametrize(("name", "reference", "dim"), [
    ("logmel", lambda a: psf.logfbank(a, 16000, 0.025, 0.01, 40, 512), 40),
    ("mfcc", lambda a: psf.mfcc(a, 16000, 0.025, 0.01, 13, 26, 512), 13),
])
def test_spectral_backends_equal_python_speech_features(name: str, reference, dim: int) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(16000)).astype(np.float32)
    backend = get_feature_backend(name)
    np.testing.assert_allclose(backend.sequence(audio), reference(audio), rtol=1e-4, atol=1e-4)
    feats = backend.compute(audio, n_frames=25, fps=25.0)
    assert feats.shape == (25, 16, dim) and feats.dtype == np.float32
    assert backend.settings()["backend"] == name


def test_unknown_backend_names_the_choices() -> None:
    assert {"logmel", "mfcc", "deepspeech"} <= set(available_feature_backends())
    with pytest.raises(KeyError, match="logmel"):
        get_feature_backend("wav2vec-from-the-internet")
