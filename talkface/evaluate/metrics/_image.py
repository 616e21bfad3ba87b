"""Shared image conventions for the pixel metrics (one grayscale rule for all of them)."""

from __future__ import annotations

import numpy as np

#: Grayscale rule used by every talkface metric: ITU-R BT.601 luma, rounded to 8 bits exactly as
#: OpenCV's ``cvtColor(..., COLOR_RGB2GRAY)`` does (fixed point, 15 fractional bits).
GRAY_RULE = "ITU-R BT.601 luma 0.299R+0.587G+0.114B rounded to uint8 (as OpenCV COLOR_RGB2GRAY)"

_R, _G, _B, _SHIFT = 9798, 19235, 3735, 15  # OpenCV: round(0.299 * 2**15), ... (sum 2**15)


def to_gray_u8(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 luma; a 2-D array (already gray) passes through."""
    rgb = np.asarray(rgb)
    if rgb.ndim >= 3 and rgb.shape[-1] == 3:
        acc = rgb[..., 0].astype(np.int32) * _R + rgb[..., 1].astype(np.int32) * _G
        acc += rgb[..., 2].astype(np.int32) * _B
        return ((acc + (1 << (_SHIFT - 1))) >> _SHIFT).astype(np.uint8)
    return rgb


def as_frames_hwc(x: np.ndarray, gray: bool) -> np.ndarray:
    """Normalise to (T, H, W, C) in the input's dtype (no copy where none is needed): a single image
    gains T=1; ``gray`` converts colour with :data:`GRAY_RULE` and gives C=1."""
    x = np.asarray(x)
    if gray:
        if x.shape[-1] == 3 and x.ndim >= 3:
            x = to_gray_u8(x)
        if x.ndim == 2:
            x = x[None]
        return x[..., None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"colour input must be (H, W, 3) or (T, H, W, 3), got {x.shape}")
    return x
