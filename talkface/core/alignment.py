"""Similarity alignment of faces to the canonical 68-point template, and aligned crops.

Each frame's transform maps source pixels to crop pixels: ``crop = A @ [x, y, 1]`` with ``A`` (2, 3)
= [s R | t], a rotation, uniform scale and translation (no reflection, no shear), fitted by least
squares (Umeyama 1991) from the frame's stable points (eye corners and nose, which do not move with
speech) to the same points of the template. The stable points are smoothed over time first
(Savitzky-Golay, ``TRANSFORM_SMOOTH_WINDOW`` frames), so crops do not shake with landmark jitter while
the mouth moves freely inside the crop.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import cv2
import numpy as np

from talkface.core.landmarks.temporal import smooth_landmarks

#: Eye corners (36, 39, 42, 45) and the upper nose bridge (27, 28): rigid with the skull. The lower
#: nose is left out: it foreshortens when the head nods and the nostrils (31-35) move with the upper
#: lip, which changed the crop scale by 6-9% within GRID s1 clips (eyes + upper bridge: under 3.5%).
STABLE_POINTS: tuple[int, ...] = (27, 28, 36, 39, 42, 45)
#: Outer eye corners: the inter-ocular distance used by the template's normalisation.
OUTER_EYE_CORNERS: tuple[int, int] = (36, 45)
TRANSFORM_SMOOTH_WINDOW = 5  # frames; with polyorder 2 the -3 dB cut-off is ~6 Hz at 25 fps
TRANSFORM_SMOOTH_POLYORDER = 2
TEMPLATE_RESOURCE = "face_template_68.json"


@functools.lru_cache(maxsize=1)
def template_info() -> dict[str, Any]:
    """The packaged template file: unit-square points plus how they were computed."""
    text = resources.files("talkface").joinpath("data", TEMPLATE_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


def load_template(crop_size: int) -> np.ndarray:
    """(68, 2) float32 template landmarks in pixels of a ``crop_size`` x ``crop_size`` crop."""
    unit = np.asarray(template_info()["points"], dtype=np.float32)
    return unit * np.float32(crop_size)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (s, R, t) with ``dst ~ s R src + t``, as a (2, 3) matrix.

    Umeyama's closed form: R from the SVD of the cross-covariance, with the sign of the last singular
    direction flipped when needed so that R is a rotation (det +1), never a reflection.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    return estimate_similarities(src[None], dst)[0]


def estimate_similarities(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """:func:`estimate_similarity` for a stack of point sets: (T, N, 2) sources to one (N, 2) target,
    as (T, 2, 3), in float64 (NumPy's stacked SVD runs LAPACK per matrix)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 3 or src.shape[1:] != dst.shape or dst.shape[1] != 2 or len(dst) < 2:
        raise ValueError(f"need (T, N, 2) sources for an (N>=2, 2) target, got {src.shape} and {dst.shape}")
    n = src.shape[1]
    mu_s, mu_d = src.mean(1), dst.mean(0)
    xs, xd = src - mu_s[:, None], dst - mu_d
    var_s = (xs**2).sum(axis=(1, 2)) / n
    if (var_s <= 0).any():
        raise ValueError("source points are all identical")
    cov = np.einsum("nj,tnk->tjk", xd, xs) / n
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones((len(src), 2))
    d[np.linalg.det(u) * np.linalg.det(vt) < 0, 1] = -1.0
    rot = u @ (d[:, :, None] * vt)
    scale = (sig * d).sum(1) / var_s
    t = mu_d - scale[:, None] * np.einsum("tij,tj->ti", rot, mu_s)
    return np.concatenate([scale[:, None, None] * rot, t[:, :, None]], axis=2)


def apply_transform(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply (2, 3) transform(s) to points (..., N, 2); a (T, 2, 3) stack maps a (T, N, 2) track."""
    points = np.asarray(points, dtype=np.float64)
    transform = np.asarray(transform, dtype=np.float64)
    lin = transform[..., :2]
    t = transform[..., 2]
    out = np.einsum("...ij,...nj->...ni", lin, points) + t[..., None, :]
    return out.astype(np.float32)


def align_landmarks(
    points: np.ndarray,
    crop_size: int = 128,
    smooth_window: int = TRANSFORM_SMOOTH_WINDOW,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame source->crop similarity transforms and the landmarks mapped into the crop.

    ``points`` (T, 68, 2) source pixels, NaN where no face. Returns ``transforms`` (T, 2, 3) float32
    and ``aligned`` (T, 68, 2) float32 crop pixels; both NaN on frames whose landmarks are NaN.
    ``smooth_window`` (odd; 1 = no smoothing) smooths the stable points before fitting.
    """
    points = np.asarray(points, dtype=np.float32)
    template = load_template(crop_size)[list(STABLE_POINTS)]
    stable = points[:, list(STABLE_POINTS)]
    if smooth_window > 1:
        stable = smooth_landmarks(stable, window=smooth_window, polyorder=TRANSFORM_SMOOTH_POLYORDER)
    transforms = np.full((len(points), 2, 3), np.nan, dtype=np.float32)
    valid = ~np.isnan(points).any(axis=(1, 2))
    if valid.any():
        transforms[valid] = estimate_similarities(stable[valid], template)
    aligned = apply_transform(points, transforms)
    return transforms, aligned


def warp_crop(frame: np.ndarray, transform: np.ndarray, crop_size: int = 128) -> np.ndarray:
    """The aligned (crop_size, crop_size, 3) uint8 crop: bilinear, border pixels replicated.

    Replicating the border (rather than black) keeps a face near the frame edge from gaining a hard
    black edge that a generator would learn. Raises ValueError for a NaN transform (no face).
    """
    transform = np.asarray(transform, dtype=np.float64)
    if not np.isfinite(transform).all():
        raise ValueError("no transform for this frame (no face); fill or skip it before warping")
    return cv2.warpAffine(
        np.ascontiguousarray(frame),
        transform,
        (crop_size, crop_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def alignment_settings(crop_size: int, smooth_window: int = TRANSFORM_SMOOTH_WINDOW) -> dict[str, Any]:
    """Everything that changes crops and aligned landmarks, for the manifest."""
    info = template_info()
    return {
        "crop_size": crop_size,
        "stable_points": list(STABLE_POINTS),
        "transform": "similarity (Umeyama least squares, no reflection)",
        "transform_smoothing": {"filter": "savitzky-golay", "window": smooth_window,
                                "polyorder": TRANSFORM_SMOOTH_POLYORDER},
        "warp": "cv2.warpAffine bilinear, border replicate",
        "template": TEMPLATE_RESOURCE,
        "template_sha256": info.get("sha256_points", ""),
    }
