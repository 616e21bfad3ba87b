"""Stage 3: person-independent landmark motion -> the target identity's landmarks.

target = identity + s R (final - anchor), where the similarity (s, R) maps the anchor onto the
identity's landmarks, fitted by least squares on the stable points (nose, eye corners: they do not move
with speech). The translation of that similarity drops out: only displacements are mapped.

The anchor is the pose the identity image is assumed to show. The paper uses the mean face; but the
identity frame is chosen with a closed, neutral mouth (``talkface.core.face68.choose_identity_frame``)
while the mean face's mouth is the average over speech (inner-lip gap 9% of the mouth width on GRID s1,
against 3% in the most closed tenth of frames), so every generated mouth came out that much too closed.
:func:`rest_anchor` gives the mean face with its speech-moved points (jaw and mouth) taken from the
sequence's own most closed frames: on 26 held-out GRID s1 clips the retargeted mouth LMD fell from
0.90 to 0.59 px against the real landmarks (docs/models.md).

The similarity is fitted on the whole face, but mouths differ in size more than faces do: GRID s4's closed
mouth is 0.82 of the width the similarity predicts from a model trained on s1 (s1's own clips: 0.99), so
her mouth moved as far as s1's wider one. :func:`mouth_scale` scales the jaw and mouth displacements by
the identity's mouth width over the anchor's, mapped: on the 49 clips of s4 (never trained on) the
retargeted mouth LMD against the real landmarks fell from 0.743 to 0.708 px (the still frame: 0.938);
on 14 held-out s1 clips it stayed 0.70 (docs/models.md, "Mouths of another size").
"""

from __future__ import annotations

import numpy as np

from talkface.core.alignment import STABLE_POINTS, estimate_similarity
from talkface.core.face68 import mouth_opening

#: Points that move with speech: jaw line 0-16 and mouth 48-67 (the rest stays the mean face's).
SPEECH_POINTS = np.r_[0:17, 48:68]
#: Fraction of a sequence's frames, the most closed mouths, averaged into the rest anchor.
REST_FRACTION = 0.1
REST_ANCHOR_RULE = ("mean face, with jaw and mouth points (0-16, 48-67) averaged over the generated frames "
                    f"in the lowest {REST_FRACTION:.0%} of mouth opening (the identity frame's closed mouth)")
#: Bounds of :func:`mouth_scale`: mouth corners misplaced by a detector must neither blow the motion up
#: nor freeze it (GRID s4 against a model trained on s1: 0.82).
MOUTH_SCALE_BOUNDS = (0.67, 1.5)
MOUTH_SCALE_RULE = ("jaw and mouth displacements (points 0-16, 48-67) also scaled by the identity's mouth "
                    "width (corners 48-54) over the anchor's mapped by the face similarity, clipped to "
                    f"[{MOUTH_SCALE_BOUNDS[0]}, {MOUTH_SCALE_BOUNDS[1]}]")


def rest_anchor(sequence: np.ndarray, mean_face: np.ndarray, fraction: float = REST_FRACTION) -> np.ndarray:
    """(68, 2) anchor for :func:`retarget`: ``mean_face`` with the jaw and mouth points replaced by their
    mean over the frames of ``sequence`` (T, 68, 2) whose mouth opening is in the lowest ``fraction``
    (at least one frame): the sequence's own closed mouth, matched to the identity's closed mouth."""
    seq = np.asarray(sequence, np.float64)
    anchor = np.array(mean_face, np.float64, copy=True)
    if seq.ndim != 3 or not len(seq):
        return anchor
    opening = mouth_opening(seq)
    finite = np.flatnonzero(np.isfinite(opening))
    if not len(finite):
        return anchor
    k = max(1, int(round(fraction * len(finite))))
    closed = finite[np.argsort(opening[finite], kind="stable")[:k]]
    anchor[SPEECH_POINTS] = seq[closed][:, SPEECH_POINTS].mean(axis=0)
    return anchor


def fit_motion_transform(mean_face: np.ndarray, identity: np.ndarray,
                         points: tuple[int, ...] = STABLE_POINTS) -> np.ndarray:
    """(2, 2) matrix s R taking mean-face displacements into the identity's frame."""
    mean_face = np.asarray(mean_face, np.float64)
    identity = np.asarray(identity, np.float64)
    if mean_face.shape != (68, 2) or identity.shape != (68, 2):
        raise ValueError(f"need (68, 2) landmarks, got {mean_face.shape} and {identity.shape}")
    idx = list(points)
    return estimate_similarity(mean_face[idx], identity[idx])[:, :2]


def mouth_scale(anchor: np.ndarray, identity: np.ndarray, sr: np.ndarray) -> float:
    """How much larger the identity's mouth is than the anchor's once the face similarity ``sr`` (2, 2)
    has mapped it: corner-to-corner width (points 48, 54) of ``identity`` over that of ``anchor @ sr.T``,
    clipped to :data:`MOUTH_SCALE_BOUNDS`; 1 when either width is not a positive finite number."""
    anchor = np.asarray(anchor, np.float64)
    identity = np.asarray(identity, np.float64)
    own = float(np.linalg.norm(identity[54] - identity[48]))
    mapped = float(np.linalg.norm((anchor[54] - anchor[48]) @ sr.T))
    if not (np.isfinite(own) and np.isfinite(mapped) and own > 0 and mapped > 0):
        return 1.0
    return float(np.clip(own / mapped, *MOUTH_SCALE_BOUNDS))


def retarget(final: np.ndarray, anchor: np.ndarray, identity: np.ndarray,
             points: tuple[int, ...] = STABLE_POINTS, scale_mouth: bool = True) -> np.ndarray:
    """(T, 68, 2) or (68, 2) person-independent landmarks -> the identity's landmarks, same shape.

    ``anchor`` (68, 2): the person-independent pose that maps onto ``identity`` unchanged (the mean
    face in the paper; :func:`rest_anchor` for an identity with a closed mouth). All inputs in one
    coordinate frame (the aligned crop, unit or pixels). ``scale_mouth``: the jaw and mouth
    displacements are also scaled by :func:`mouth_scale` (a smaller mouth moves less).
    """
    final = np.asarray(final, np.float64)
    sr = fit_motion_transform(anchor, identity, points)
    motion = (final - np.asarray(anchor, np.float64)) @ sr.T
    if scale_mouth:
        motion[..., SPEECH_POINTS, :] *= mouth_scale(anchor, identity, sr)
    out = np.asarray(identity, np.float64) + motion
    return out.astype(np.float32)
