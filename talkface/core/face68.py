"""The 68-point face (iBUG 300-W order, 0-based) and every rule talkface reads off it, in one place.

Points 36-41 are the subject's **right** eye (on the image's left in a frontal view), 42-47 the left
eye; 17-21 the right brow, 22-26 the left; 48-59 the outer lips, 60-67 the inner lips. Regions are
slices, so ``points[..., MOUTH, :]`` is a view on NumPy arrays and torch tensors alike.

The rules here are shared by preparation, training, generation and evaluation: the eye aspect ratio
and the blink rule (the evaluation's metric, the blink stage's training statistics, the identity
frame and the blink calibration all use these), mouth opening, LMD and the identity-frame rule. A
change here changes all of them together, which is why they live nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_POINTS = 68
JAW = slice(0, 17)
RIGHT_BROW = slice(17, 22)
LEFT_BROW = slice(22, 27)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
EYES = slice(36, 48)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)
MOUTH = slice(48, 68)
NOSE_TIP, CHIN = 30, 8
MOUTH_CORNERS = (48, 54)
#: Vertical lip distances (upper point, lower point): outer lips 50-58, 51-57, 52-56, inner 61-67,
#: 62-66, 63-65.
OPENING_PAIRS = ((50, 58), (51, 57), (52, 56), (61, 67), (62, 66), (63, 65))


def indices(region: slice) -> tuple[int, ...]:
    """The point indices of a region, as a tuple (for fancy indexing and concatenation)."""
    return tuple(range(N_POINTS)[region])


class NoFaceError(ValueError):
    """An image in which the backend finds no face (e.g. an identity image for generation)."""


# -- eyes: eye aspect ratio (Soukupova & Cech, CVWW 2016) and blinks ---------------------------------

DEFAULT_REL_THRESHOLD = 0.75
DEFAULT_MIN_FRAMES = 2


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T,) mean EAR of both eyes (NaN where landmarks are NaN)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim == 2:
        pts = pts[None]

    def one(eye: np.ndarray) -> np.ndarray:
        p = pts[:, eye]
        vertical = np.linalg.norm(p[:, 1] - p[:, 5], axis=1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=1)
        horizontal = np.linalg.norm(p[:, 0] - p[:, 3], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return vertical / (2.0 * horizontal)

    return (one(RIGHT_EYE) + one(LEFT_EYE)) / 2.0


@dataclass
class BlinkStats:
    """Blink events of one EAR trace; times in seconds, intervals between consecutive blink onsets."""

    starts: np.ndarray  # first closed frame of each blink
    lengths: np.ndarray  # frames per blink
    threshold: float
    n_frames: int
    fps: float
    closed_lengths: np.ndarray | None = None  # per blink, frames under the "closed" level (closed_rel)

    @property
    def count(self) -> int:
        return int(self.starts.size)

    @property
    def duration_min(self) -> float:
        return self.n_frames / self.fps / 60.0

    @property
    def rate_per_min(self) -> float:
        return self.count / self.duration_min if self.n_frames else float("nan")

    @property
    def mean_duration_s(self) -> float:
        return float(self.lengths.mean() / self.fps) if self.count else float("nan")

    @property
    def mean_closed_duration_s(self) -> float:
        """Mean frames per blink under the "substantially closed" level, in seconds."""
        if self.closed_lengths is None:
            raise ValueError("detect_blinks(..., closed_rel=...) was not given a closed level")
        return float(self.closed_lengths.mean() / self.fps) if self.count else float("nan")

    @property
    def mean_interval_s(self) -> float:
        return float(np.diff(self.starts).mean() / self.fps) if self.count > 1 else float("nan")


def detect_blinks(
    ear: np.ndarray,
    fps: float,
    threshold: float | None = None,
    rel_threshold: float = DEFAULT_REL_THRESHOLD,
    min_frames: int = DEFAULT_MIN_FRAMES,
    closed_rel: float | None = None,
) -> BlinkStats:
    """Blinks in an EAR trace: runs of >= ``min_frames`` frames below the threshold.

    ``threshold`` None means ``rel_threshold`` x median EAR of the trace (finite frames only).
    ``closed_rel`` also counts, per blink, its frames below ``closed_rel`` x the median EAR
    (``closed_lengths``: the "substantially closed" duration).
    """
    ear = np.asarray(ear, dtype=np.float64)
    finite = np.isfinite(ear)
    if threshold is None:
        threshold = float(rel_threshold * np.median(ear[finite])) if finite.any() else float("nan")
    closed = finite & (ear < threshold)
    padded = np.concatenate([[False], closed, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    keep = lengths >= min_frames
    starts, lengths = starts[keep], lengths[keep]
    closed_lengths = None
    if closed_rel is not None:
        level = closed_rel * np.median(ear[finite]) if finite.any() else np.nan
        shut = (finite & (ear < level)).astype(np.int64)
        cum = np.concatenate([[0], np.cumsum(shut)])
        closed_lengths = cum[starts + lengths] - cum[starts]
    return BlinkStats(starts, lengths, float(threshold), int(ear.size), float(fps), closed_lengths)



# -- mouth -----------------------------------------------------------------------------------------


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T,) inner-lip gap (mean of the three vertical inner-lip distances 61-67, 62-66,
    63-65) divided by the mouth width (corners 48-54); NaN where points are missing."""
    pts = np.asarray(landmarks, np.float64)
    gap = np.mean([np.linalg.norm(pts[:, a] - pts[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))],
                  axis=0)
    width = np.linalg.norm(pts[:, 48] - pts[:, 54], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap / width


# -- LMD (Chen et al., ECCV 2018) ---------------------------------------------------------------

POINT_SETS: dict[str, np.ndarray] = {"mouth": np.arange(48, 68), "face": np.arange(68)}
REDUCTIONS = ("mean", "sum")


def lmd_frames(
    pred: np.ndarray, ref: np.ndarray, points: str = "mouth", reduction: str = "mean"
) -> np.ndarray:
    """Per-frame LMD of (T, 68, 2) (or (68, 2)) landmarks; NaN where either frame has no landmarks."""
    if points not in POINT_SETS:
        raise ValueError(f"unknown point set {points!r}; choose from {sorted(POINT_SETS)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose from {REDUCTIONS}")
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if p.ndim == 2:
        p, r = p[None], r[None]
    if p.shape != r.shape or p.shape[1:] != (68, 2):
        raise ValueError(f"expected matching (T, 68, 2) landmarks, got {p.shape} and {r.shape}")
    idx = POINT_SETS[points]
    p, r = p[:, idx], r[:, idx]
    p = p - p.mean(axis=1, keepdims=True)
    r = r - r.mean(axis=1, keepdims=True)
    dist = np.linalg.norm(p - r, axis=2)
    return dist.mean(axis=1) if reduction == "mean" else dist.sum(axis=1)


def lmd(pred: np.ndarray, ref: np.ndarray, points: str = "mouth", reduction: str = "mean") -> float:
    """Mean over frames (with landmarks on both sides) of the per-frame LMD, in pixels."""
    per_frame = lmd_frames(pred, ref, points=points, reduction=reduction)
    valid = per_frame[np.isfinite(per_frame)]
    return float(valid.mean()) if valid.size else float("nan")


# -- the identity frame -------------------------------------------------------------------------

# The identity frame of a prepared clip, in words (generation.json records it; every method uses it).
IDENTITY_RULE = ("the clip's frame with the most closed, neutral mouth among its frames with both eyes open "
                 "(inner-lip gap plus mouth-width change, relative to mouth width; EAR at least the clip's "
                 "median), from its aligned crops")


def choose_identity_frame(landmarks: np.ndarray) -> int:
    """The identity frame of a clip (:data:`IDENTITY_RULE`): among frames with all landmarks and eyes
    open (EAR, the evaluation's, at least the median over those frames), the one minimising the mouth's
    opening plus its width's relative change from the clip's median width, so a closed mouth at rest,
    not a spread or pursed one; the earliest such frame on ties. ``NoFaceError`` without any landmarks.

    Why: the texture stage copies what it does not change from the identity frame; an open mouth or
    shut eyes there show through in every generated frame (docs/models.md).
    """
    pts = np.asarray(landmarks, np.float64)
    valid = np.flatnonzero(np.isfinite(pts).all(axis=(1, 2)))
    if not len(valid):
        raise NoFaceError("no frame with landmarks to take the identity from")
    ear = eye_aspect_ratio(pts[valid])
    open_eyes = valid[ear >= np.median(ear)]
    width = np.linalg.norm(pts[open_eyes, 48] - pts[open_eyes, 54], axis=-1)
    score = mouth_opening(pts[open_eyes]) + np.abs(width / np.median(width) - 1.0)
    return int(open_eyes[int(np.argmin(score))])


