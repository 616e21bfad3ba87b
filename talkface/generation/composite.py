"""Paste the generated face parts that speech and blinks move back into the identity frame.

The texture stage outputs ``A * C + (1 - A) * identity`` (the paper's attention): where its attention
is not exactly zero it also redraws the cheeks, hair and background that the landmarks do not move,
and every such redraw costs fidelity. On 26 held-out GRID s1 clips its copy of the identity frame
itself scored 36.2 dB PSNR where the identity frame scores 46.7 (the codec's ceiling), and the frames
nearest the identity frame lost most (docs/models.md). The landmarks say where motion can be: around
the mouth and jaw (speech) and the eyes (blinks). Outside those regions the identity frame is
already the best estimate the pipeline has (it models no head motion), so the frame there is taken
from the identity, with a soft edge.

Regions, per frame from the target landmarks (crop pixels): an ellipse around the mouth (centre the
centroid of points 48-67, semi-axes ``MOUTH_AXES`` x the mouth's width and height spans, at least the
width x 0.4 in height so a closed mouth still covers the lips and chin) and one around each eye
(semi-axes ``EYE_AXES`` x the eye's width). Weight 1 inside half the ellipse's squared radius, 0
beyond 1.5, linear in between.
"""

from __future__ import annotations

import numpy as np

from talkface.core.face68 import LEFT_EYE, MOUTH, RIGHT_EYE

EYES = (RIGHT_EYE, LEFT_EYE)
MOUTH_AXES = (1.0, 1.6)  # x the mouth's (width, height) span
MIN_MOUTH_HEIGHT = 0.4  # x its width: a closed mouth's ellipse still reaches the chin
EYE_AXES = (1.0, 1.0)  # x the eye's width, both axes

RULE = ("generated pixels kept inside soft ellipses around the mouth (1.0 x width, 1.6 x height span) "
        "and each eye (1.0 x eye width) of each frame's target landmarks, the identity frame's pixels "
        "outside (weight 1 within half the ellipse's squared radius, 0 beyond 1.5)")


def _ellipse_weight(yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(B, S, S) weights of B ellipses: 1 where r^2 <= 0.5, 0 where r^2 >= 1.5, linear between."""
    cx, cy = centre[:, 0, None, None], centre[:, 1, None, None]
    ax, ay = np.maximum(axes[:, 0, None, None], 1e-3), np.maximum(axes[:, 1, None, None], 1e-3)
    r2 = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    return np.clip(1.5 - r2, 0.0, 1.0)


def motion_mask(landmarks_px: np.ndarray, size: int) -> np.ndarray:
    """(B, 68, 2) target landmarks in crop pixels -> (B, size, size) float32 weights of the generated
    frame (1: generated, 0: identity). A frame with missing points keeps the whole generated frame."""
    pts = np.asarray(landmarks_px, np.float64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    mouth = pts[:, MOUTH]
    span = mouth.max(axis=1) - mouth.min(axis=1)
    height = np.maximum(span[:, 1], MIN_MOUTH_HEIGHT * span[:, 0])
    axes = np.stack([span[:, 0] * MOUTH_AXES[0], height * MOUTH_AXES[1]], axis=1)
    weight = _ellipse_weight(yy, xx, mouth.mean(axis=1), axes)
    for eye in EYES:
        e = pts[:, eye]
        width = e[:, :, 0].max(axis=1) - e[:, :, 0].min(axis=1)
        axes = np.stack([width * EYE_AXES[0], width * EYE_AXES[1]], axis=1)
        weight = np.maximum(weight, _ellipse_weight(yy, xx, e.mean(axis=1), axes))
    missing = ~np.isfinite(pts).all(axis=(1, 2))  # the only frames whose weights can be NaN
    weight[missing] = 1.0
    return weight.astype(np.float32)


def paste_into_identity(frames: np.ndarray, identity: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """(B, S, S, 3) uint8 generated frames -> the same, identity pixels outside :func:`motion_mask`."""
    frames = np.asarray(frames)
    w = motion_mask(landmarks_px, frames.shape[1])[..., None]
    out = w * frames.astype(np.float32) + (1.0 - w) * np.asarray(identity, np.float32)[None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
