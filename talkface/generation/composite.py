"""Where each output pixel comes from: the texture stage's frame, or what the pipeline already knows.

Two rules, chosen by name (:data:`COMPOSITES`); the generator records the one it used.

``interior`` (the default for a texture stage that edits the warped identity, ``base="warp"``): the
frame is the identity image warped to the target landmarks (:mod:`talkface.generation.warp`), and the
texture stage's frame is kept only where warping has nothing to show: inside the target's inner-lip
polygon (points 60-67; the open mouth: teeth, tongue, cavity), dilated by one pixel per 64 of crop size
and feathered by as much, and inside the eye ellipses below (a blink: a warp only squeezes the lids).
Why: the texture stage is trained on the speakers of its dataset and draws their skin and lips; on a
person it never saw, its frame moved the face away from that person. With the same trained stages
(45 minutes on GRID s1, scored on s4, a speaker they never saw), this rule against ``face-parts`` brought
the dlib descriptor distance to the identity image down to the real video's own and PSNR and SSIM up to
the still frame's (``benchmarks/results/unseen_identities.json``, rows ``pipeline`` and
``pipeline-face-parts``; docs/models.md).

``face-parts`` (the rule for a stage that edits the identity image, ``base="identity"``, and what
every texture stage used before ``interior``): the texture stage's frame inside soft ellipses around
the mouth and the eyes, the identity image outside. The texture stage's attention also redraws the
cheeks, hair and background that the landmarks do not move, and every such redraw costs fidelity: on
26 held-out GRID s1 clips its copy of the identity frame scored 36.2 dB PSNR where the identity frame
scores 46.7 (the codec's ceiling). The landmarks say where motion can be: around the mouth and jaw
(speech) and the eyes (blinks).

Regions, per frame from the target landmarks (crop pixels): an ellipse around the mouth (centre the
centroid of points 48-67, semi-axes ``MOUTH_AXES`` x the mouth's width and height spans, at least the
width x 0.4 in height so a closed mouth still covers the lips and chin) and one around each eye
(semi-axes ``EYE_AXES`` x the eye's width). Weight 1 inside half the ellipse's squared radius, 0
beyond 1.5, linear in between. A frame with missing points keeps the texture stage's whole frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkface.core.face68 import INNER_LIPS, LEFT_EYE, MOUTH, RIGHT_EYE

EYES = (RIGHT_EYE, LEFT_EYE)
MOUTH_AXES = (1.0, 1.6)  # x the mouth's (width, height) span
MIN_MOUTH_HEIGHT = 0.4  # x its width: a closed mouth's ellipse still reaches the chin
EYE_AXES = (1.0, 1.0)  # x the eye's width, both axes
INTERIOR_MARGIN = 1 / 64  # x crop size: the inner-lip polygon's dilation, and its feather (Gaussian sigma)

RULES = {
    "interior": ("the identity frame warped (piecewise-affine) to each frame's target landmarks; the texture "
                 "stage's pixels inside the target inner-lip polygon (points 60-67, dilated and feathered by "
                 "1 px per 64 of crop size) and inside the eye ellipses (1.0 x eye width; weight 1 within "
                 "half the ellipse's squared radius, 0 beyond 1.5)"),
    "face-parts": ("generated pixels kept inside soft ellipses around the mouth (1.0 x width, 1.6 x height "
                   "span) and each eye (1.0 x eye width) of each frame's target landmarks, the identity "
                   "frame's pixels outside (weight 1 within half the ellipse's squared radius, 0 beyond "
                   "1.5)"),
}
COMPOSITES = tuple(RULES)  # the rules by name, the default for a warp-based stage first


def default_composite(texture_base: str) -> str:
    """The rule for a texture stage by what it edits: ``interior`` over the warp, else ``face-parts``."""
    return "interior" if texture_base == "warp" else "face-parts"


def check_composite(name: str) -> str:
    if name not in COMPOSITES:
        raise ValueError(f"unknown composite rule {name!r}; choose one of {', '.join(COMPOSITES)}")
    return name


def _ellipse_weight(yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(B, S, S) weights of B ellipses: 1 where r^2 <= 0.5, 0 where r^2 >= 1.5, linear between."""
    cx, cy = centre[:, 0, None, None], centre[:, 1, None, None]
    ax, ay = np.maximum(axes[:, 0, None, None], 1e-3), np.maximum(axes[:, 1, None, None], 1e-3)
    r2 = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    return np.clip(1.5 - r2, 0.0, 1.0)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return yy, xx


def _eye_weight(pts: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    weight = np.zeros((len(pts), *yy.shape))
    for eye in EYES:
        e = pts[:, eye]
        width = e[:, :, 0].max(axis=1) - e[:, :, 0].min(axis=1)
        axes = np.stack([width * EYE_AXES[0], width * EYE_AXES[1]], axis=1)
        weight = np.maximum(weight, _ellipse_weight(yy, xx, e.mean(axis=1), axes))
    return weight


def _whole_where_missing(weight: np.ndarray, pts: np.ndarray) -> np.ndarray:
    missing = ~np.isfinite(pts).all(axis=(1, 2))  # the only frames whose weights can be NaN
    weight[missing] = 1.0
    return weight.astype(np.float32)


def motion_mask(landmarks_px: np.ndarray, size: int) -> np.ndarray:
    """(B, 68, 2) target landmarks in crop pixels -> (B, size, size) float32 weights of the generated
    frame under ``face-parts`` (1: generated, 0: identity)."""
    pts = np.asarray(landmarks_px, np.float64)
    yy, xx = _grid(size)
    mouth = pts[:, MOUTH]
    span = mouth.max(axis=1) - mouth.min(axis=1)
    height = np.maximum(span[:, 1], MIN_MOUTH_HEIGHT * span[:, 0])
    axes = np.stack([span[:, 0] * MOUTH_AXES[0], height * MOUTH_AXES[1]], axis=1)
    weight = np.maximum(_ellipse_weight(yy, xx, mouth.mean(axis=1), axes), _eye_weight(pts, yy, xx))
    return _whole_where_missing(weight, pts)


def interior_mask(landmarks_px: np.ndarray, size: int) -> np.ndarray:
    """(B, 68, 2) target landmarks in crop pixels -> (B, size, size) float32 weights of the generated
    frame under ``interior`` (1: generated, 0: warped identity)."""
    pts = np.asarray(landmarks_px, np.float64)
    yy, xx = _grid(size)
    margin = max(1, round(size * INTERIOR_MARGIN))
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    mouth = np.zeros((len(pts), size, size), np.float32)
    for i, p in enumerate(pts):
        if not np.isfinite(p[INNER_LIPS]).all():
            continue
        cv2.fillPoly(mouth[i], [np.round(p[INNER_LIPS]).astype(np.int32)], 1.0)
        mouth[i] = cv2.GaussianBlur(cv2.dilate(mouth[i], kernel), (0, 0), margin)
    weight = np.maximum(mouth, _eye_weight(pts, yy, xx))
    return _whole_where_missing(weight, pts)


def blend(frames: np.ndarray, under: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight * frames + (1 - weight) * under``, rounded to uint8; ``under`` (S, S, 3) or (B, S, S, 3)."""
    w = weight[..., None]
    out = w * np.asarray(frames, np.float32) + (1.0 - w) * np.asarray(under, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def paste_into_identity(frames: np.ndarray, identity: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """``face-parts``: (B, S, S, 3) uint8 generated frames -> the same, identity pixels outside
    :func:`motion_mask`."""
    frames = np.asarray(frames)
    return blend(frames, np.asarray(identity)[None], motion_mask(landmarks_px, frames.shape[1]))


def paste_into_warp(frames: np.ndarray, warped: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """``interior``: (B, S, S, 3) uint8 generated frames -> the same, the warped identity (B, S, S, 3)
    outside :func:`interior_mask`."""
    frames = np.asarray(frames)
    return blend(frames, warped, interior_mask(landmarks_px, frames.shape[1]))
