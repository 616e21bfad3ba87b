"""Stage 3: person-independent landmark motion -> the target identity's landmarks.

target = identity + s R (final - mean_face), where the similarity (s, R) maps the mean face onto the
identity's landmarks, fitted by least squares on the stable points (nose, eye corners: they do not move
with speech). The translation of that similarity drops out: only displacements are mapped.
"""

from __future__ import annotations

import numpy as np

from talkface.preprocess.alignment import STABLE_POINTS, estimate_similarity


def fit_motion_transform(mean_face: np.ndarray, identity: np.ndarray,
                         points: tuple[int, ...] = STABLE_POINTS) -> np.ndarray:
    """(2, 2) matrix s R taking mean-face displacements into the identity's frame."""
    mean_face = np.asarray(mean_face, np.float64)
    identity = np.asarray(identity, np.float64)
    if mean_face.shape != (68, 2) or identity.shape != (68, 2):
        raise ValueError(f"need (68, 2) landmarks, got {mean_face.shape} and {identity.shape}")
    idx = list(points)
    return estimate_similarity(mean_face[idx], identity[idx])[:, :2]


def retarget(final: np.ndarray, mean_face: np.ndarray, identity: np.ndarray,
             points: tuple[int, ...] = STABLE_POINTS) -> np.ndarray:
    """(T, 68, 2) or (68, 2) landmarks of the mean face -> the identity's landmarks, same shape.

    All inputs in one coordinate frame (the aligned crop, unit or pixels).
    """
    final = np.asarray(final, np.float64)
    sr = fit_motion_transform(mean_face, identity, points)
    motion = final - np.asarray(mean_face, np.float64)
    out = np.asarray(identity, np.float64) + motion @ sr.T
    return out.astype(np.float32)
