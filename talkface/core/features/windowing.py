"""From a feature sequence at its own rate to per-video-frame windows (VOCA's recipe).

1. Linear interpolation of the sequence (rate ``src_rate``, sample i at time i / src_rate) onto the
   video frame times k / fps, k = 0 .. T-1.
2. Windows of W consecutive frames centred on each frame: frames k - W//2 .. k + W - W//2 - 1,
   zero-padded at both ends. For W = 16 that is 8 frames before and 7 after.
"""

from __future__ import annotations

import numpy as np


def interpolate_to_frames(seq: np.ndarray, src_rate: float, n_frames: int, fps: float) -> np.ndarray:
    """(N, D) at ``src_rate`` -> (n_frames, D) at ``fps``; times past the end repeat the last value."""
    seq = np.asarray(seq, dtype=np.float32)
    if seq.ndim != 2:
        raise ValueError(f"expected a (N, D) sequence, got shape {seq.shape}")
    if len(seq) == 0:
        return np.zeros((n_frames, seq.shape[1]), dtype=np.float32)
    src_t = np.arange(len(seq)) / float(src_rate)
    dst_t = np.arange(n_frames) / float(fps)
    # Vectorised linear interpolation over all feature columns at once.
    pos = np.clip(np.interp(dst_t, src_t, np.arange(len(seq), dtype=np.float64)), 0, len(seq) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(seq) - 1)
    frac = (pos - lo).astype(np.float32)[:, None]
    return seq[lo] * (1 - frac) + seq[hi] * frac


def window_frames(per_frame: np.ndarray, window: int = 16) -> np.ndarray:
    """(T, D) -> (T, W, D): the W frames centred on each frame, zero-padded at both ends."""
    per_frame = np.asarray(per_frame, dtype=np.float32)
    if window < 1:
        raise ValueError("window must be >= 1")
    t, d = per_frame.shape
    before = window // 2
    after = window - before - 1
    padded = np.concatenate(
        [np.zeros((before, d), np.float32), per_frame, np.zeros((after, d), np.float32)]
    )
    # A strided view, copied once: row k is padded[k : k + window].
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (T, D, W)
    return np.ascontiguousarray(view.transpose(0, 2, 1))
