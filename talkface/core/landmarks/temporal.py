"""Temporal clean-up of landmark tracks: fill short gaps, smooth without lag.

Smoothing uses a centred Savitzky-Golay filter (a least-squares polynomial fitted in a sliding window,
evaluated at the window's centre). Its weights are symmetric, so it is zero-phase: it shifts no event
in time, and the mouth does not lag the audio as it would behind a causal (e.g. exponential) filter.
It also reproduces polynomials up to its order exactly, so steady motion is not flattened.
Frames that are NaN (no face) split the track into segments that are smoothed separately, so a gap
never smears into its neighbours.

The filter is SciPy's ``savgol_filter(mode="interp")`` written out with NumPy (importing
``scipy.signal`` costs each process about a second of CPU): inside a segment each point becomes the
centre value of the polynomial fitted to its window; within half a window of a segment's ends, the
values of the polynomial fitted to the first (last) window. It agrees with SciPy to float rounding.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

SMOOTH_WINDOW = 5  # frames (0.2 s at 25 fps)
SMOOTH_POLYORDER = 2


def _valid_rows(points: np.ndarray) -> np.ndarray:
    return ~np.isnan(points.reshape(len(points), -1)).any(axis=1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index pairs of the runs of True in a 1-d bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def fill_gaps(points: np.ndarray, face_found: np.ndarray | None = None, max_gap: int = 5) -> np.ndarray:
    """Linearly interpolate across runs of at most ``max_gap`` missing frames.

    A frame is missing where ``face_found`` is False or its points are NaN. Gaps longer than
    ``max_gap``, and gaps at the start or end of the clip (no face on one side to interpolate from),
    stay NaN. Returns a new float32 array of the same shape.
    """
    out = np.array(points, dtype=np.float32, copy=True)
    valid = _valid_rows(out)
    if face_found is not None:
        valid &= np.asarray(face_found, dtype=bool)
    out[~valid] = np.nan
    for start, stop in _runs(~valid):
        if start == 0 or stop == len(out) or stop - start > max_gap:
            continue
        before, after = out[start - 1], out[stop]
        w = (np.arange(start, stop) - (start - 1)) / (stop - (start - 1))
        out[start:stop] = before[None] + w.reshape(-1, *([1] * before.ndim)) * (after - before)[None]
    return out


def smooth_landmarks(
    points: np.ndarray, window: int = SMOOTH_WINDOW, polyorder: int = SMOOTH_POLYORDER
) -> np.ndarray:
    """Centred Savitzky-Golay smoothing along time (axis 0), separately on each run of valid frames.

    ``window`` is odd, in frames. Segments shorter than ``window`` use the largest odd window that
    fits (and is > ``polyorder``); shorter still, they are returned unchanged. NaN rows stay NaN.
    At segment ends scipy's ``mode="interp"`` fits the polynomial to the edge window (no padding).
    """
    if window % 2 == 0 or window <= polyorder:
        raise ValueError(f"window must be odd and > polyorder, got window={window}, polyorder={polyorder}")
    out = np.array(points, dtype=np.float32, copy=True)
    for start, stop in _runs(_valid_rows(out)):
        n = stop - start
        w = min(window, n if n % 2 else n - 1)
        if w <= polyorder:
            continue
        out[start:stop] = _savgol_interp(out[start:stop].astype(np.float64), w, polyorder)
    return out


@functools.lru_cache(maxsize=16)
def _savgol_hat(window: int, polyorder: int) -> np.ndarray:
    """(window, window) matrix mapping a window's values to its least-squares polynomial's values at
    the same positions (row ``window // 2``: the centred Savitzky-Golay weights)."""
    x = np.arange(window, dtype=np.float64) - window // 2
    a = x[:, None] ** np.arange(polyorder + 1)
    return a @ np.linalg.pinv(a)


def _savgol_interp(seg: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky-Golay smoothing of ``seg`` (n >= window, ...) along axis 0, SciPy's ``mode="interp"``."""
    hat = _savgol_hat(window, polyorder)
    half = window // 2
    n = len(seg)
    out = np.empty_like(seg)
    centre = hat[half]
    inner = centre[0] * seg[: n - window + 1]
    for k in range(1, window):
        inner += centre[k] * seg[k : n - window + 1 + k]
    out[half : n - half] = inner
    out[:half] = np.tensordot(hat[:half], seg[:window], axes=1)
    out[n - half :] = np.tensordot(hat[window - half :], seg[n - window :], axes=1)
    return out


def smoothing_settings(window: int = SMOOTH_WINDOW, polyorder: int = SMOOTH_POLYORDER) -> dict[str, Any]:
    """How the landmarks were smoothed, for manifests and results."""
    return {"filter": "savitzky-golay (centred, zero-phase)", "window": window, "polyorder": polyorder}
