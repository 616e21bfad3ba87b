"""The landmark backend interface and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from talkface.core.face68 import BROWS, CHIN, LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_EYE, NoFaceError  # noqa: F401
from talkface.registry import Registry


@dataclass
class LandmarkTrack:
    """Per-frame landmarks of one video.

    ``points`` (T, 68, 2) float32 in source pixels (x, y), NaN where no face was found;
    ``face_found`` (T,) bool: a face was detected or tracked on that frame (before gap filling);
    ``detected`` (T,) bool: the full face detector ran on that frame (the rest were tracked).
    """

    points: np.ndarray
    face_found: np.ndarray
    detected: np.ndarray
    #: frames whose face the backend saw but rejected, by reason (e.g. ``upside_down``)
    rejected: dict[str, int] = field(default_factory=dict)
    #: counts the backend reports about the frames, e.g. ``multiple_faces`` (frames where the detector
    #: saw more than one face and chose one), ``detected_by_cnn`` (frames a detector chain's fallback found)
    info: dict[str, int] = field(default_factory=dict)
    #: (T, 2) float32 orientation evidence, NaN where not measured: a face detector's score of the
    #: face's box as it is and turned upside down (see :func:`upside_down`); None when the backend
    #: measures none
    orientation: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.points)


class LandmarkBackend(ABC):
    name: str = ""

    @abstractmethod
    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) float32 landmarks of the most confident face in an RGB uint8 image, or None."""

    def track(self, frames: Iterable[np.ndarray]) -> LandmarkTrack:
        """Landmarks for a stream of frames. The default detects on every frame; backends may track."""
        pts, found = [], []
        for frame in frames:
            p = self.detect(frame)
            found.append(p is not None)
            pts.append(p if p is not None else np.full((68, 2), np.nan, np.float32))
        n = len(pts)
        points = np.stack(pts).astype(np.float32) if n else np.zeros((0, 68, 2), np.float32)
        f = np.array(found, dtype=bool)
        return LandmarkTrack(points=points, face_found=f, detected=np.ones(n, dtype=bool))

    def settings(self) -> dict[str, Any]:
        """Everything that changes the output; stored with datasets and results."""
        return {"backend": self.name}


Factory = Callable[..., LandmarkBackend]

LANDMARK_BACKENDS: Registry[Factory] = Registry("landmark backend")
LANDMARK_BACKENDS.register_lazy("dlib", "talkface.core.landmarks.dlib_backend")
LANDMARK_BACKENDS.register_lazy("fan", "talkface.core.landmarks.fan_backend")


def register_landmark_backend(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make a backend factory available as ``get_landmark_backend(name)``."""
    return LANDMARK_BACKENDS.register(name)


def available_landmark_backends() -> list[str]:
    return LANDMARK_BACKENDS.names()


def get_landmark_backend(name: str = "dlib", **options: Any) -> LandmarkBackend:
    """A landmark backend by name (``UnknownName``, a KeyError, lists the known ones)."""
    return LANDMARK_BACKENDS.get(name)(**options)


# ---------------------------------------------------------------------------------------------
# Plausibility: a 68-point set that is not a face is treated like a frame with no face.


#: Bounds in the face's own frame: origin between the eye centres, x along the eye line (subject's
#: right eye -> left eye as the 68-point scheme numbers them), y perpendicular (down the face), unit =
#: distance between the eye centres (``d``). Measured over 45 GRID s1 and the two VoxCeleb-style
#: fixture clips (10,000 frames): brows y -0.51..-0.18, nose tip 0.44..0.78, mouth centre 1.09..1.64,
#: chin 1.88..2.84; nose tip x -0.48..0.16, mouth x -0.24..0.13; mouth width 0.60..1.02 d, jaw width
#: 2.14..3.02 d; roll -12.5..14.1 degrees. The bounds are about twice as wide as what was measured.
PLAUSIBLE_BOUNDS: dict[str, tuple[float, float]] = {
    "brows_y": (-1.2, -0.02),
    "nose_y": (0.15, 1.3),
    "mouth_y": (0.6, 2.4),
    "chin_y": (1.2, 4.0),
    "nose_x": (-1.1, 1.1),
    "mouth_x": (-0.8, 0.8),
    "mouth_width": (0.3, 1.7),
    "jaw_width": (1.2, 4.5),
}
MAX_ROLL_DEG = 60.0  # a head rolled further than this in a talking-face video is a tracking error
MIN_EYE_DISTANCE_PX = 4.0  # degenerate scale: the whole face within a few pixels
#: A frame whose eye distance differs from the median of the frames around it (``IOD_WINDOW`` frames,
#: centred) by more than this factor is a jump, not head motion (a real cut moves the median with it).
MAX_IOD_JUMP = 1.35
IOD_WINDOW = 25

#: Orientation, from the image: the 68-point predictors fit an upright face to whatever box they are
#: given, and on an upside-down head the fit is face-shaped (eyes on the eyes, mouth and jaw on the
#: forehead and hair), so no bound above can refuse it. The evidence is a face detector's score of the
#: box of the fitted points as it is (``as_is``) and turned upside down (``turned``): the frame is
#: upside down when ``turned >= TURNED_FACE_MIN`` (turned over, the box may be a face) and ``as_is``
#: does not beat ``turned`` by ``UPRIGHT_MIN_MARGIN``. A box that scores low both ways (a profile, a
#: hand over the face) is left to the other checks. Measured with dlib's HOG detector
#: (``dlib_backend.ORIENTATION_SIDE``): over 9,059 upright frames (GRID s1, s2, s23, HQ s4, the two
#: VoxCeleb-style clips) ``as_is - turned`` >= 0.95 and ``turned`` <= 0.12; over 4,058 upright fits on
#: turned copies of them (vertical flip, 180-degree turn) and the 11,116 measurements the dlib tracker
#: made on turned copies of the 125 GRID s1 clips, ``turned`` >= -0.38 and ``as_is - turned`` <= 0.28.
#: 0.4 lies between the two (a margin of 0, tried first, let 32 of those 11,116 through).
UPRIGHT_MIN_MARGIN = 0.4
TURNED_FACE_MIN = -0.5
#: A backend may measure the orientation on some frames only (the dlib tracker: every detection and
#: every 5th tracked frame). A frame without its own measurement takes the lower verdict of the
#: nearest measurements within this many frames before and after it.
ORIENTATION_REACH = 4


def upside_down(as_is: np.ndarray | float, turned: np.ndarray | float) -> np.ndarray | bool:
    """The orientation rule on detector scores (see ``UPRIGHT_MIN_MARGIN``); False where NaN."""
    a, t = np.asarray(as_is, dtype=np.float64), np.asarray(turned, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = (t >= TURNED_FACE_MIN) & (a - t < UPRIGHT_MIN_MARGIN)
    return bool(out) if out.ndim == 0 else out


def upside_down_frames(orientation: np.ndarray | None, n: int, reach: int = ORIENTATION_REACH) -> np.ndarray:
    """(T,) bool: frames measured upside down, and unmeasured frames with an upside-down measurement
    as the nearest one within ``reach`` frames before or after them (``orientation``: (T, 2) as in
    :attr:`LandmarkTrack.orientation`; None: no frame)."""
    if orientation is None or n == 0:
        return np.zeros(n, bool)
    o = np.asarray(orientation, dtype=np.float64).reshape(n, 2)
    measured = np.isfinite(o).all(axis=1)
    bad = np.zeros(n, bool)
    bad[measured] = upside_down(o[measured, 0], o[measured, 1])
    idx = np.flatnonzero(measured)
    if not len(idx):
        return bad
    t = np.arange(n)
    pos = np.searchsorted(idx, t)  # the first measured frame at or after t
    after = idx[np.minimum(pos, len(idx) - 1)]
    before = idx[np.maximum(pos - 1, 0)]
    near_after = (after >= t) & (after - t <= reach)
    near_before = (before < t) & (t - before <= reach)
    return bad | (~measured & ((near_after & bad[after]) | (near_before & bad[before])))


def face_frame_measures(points: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame measures of (T, 68, 2) points in the face's own frame (see ``PLAUSIBLE_BOUNDS``)."""
    p = np.asarray(points, dtype=np.float64)
    right, left = p[:, RIGHT_EYE].mean(1), p[:, LEFT_EYE].mean(1)
    u = left - right
    d = np.linalg.norm(u, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = u / d[:, None]
    v = np.stack([-u[:, 1], u[:, 0]], axis=1)  # u turned +90 degrees with y pointing down the image
    mid = (right + left) / 2

    def y(q: np.ndarray) -> np.ndarray:
        return ((q - mid) * v).sum(1) / d

    def x(q: np.ndarray) -> np.ndarray:
        return ((q - mid) * u).sum(1) / d

    mouth = p[:, MOUTH].mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "eye_distance": d,
            "roll_deg": np.degrees(np.arctan2(u[:, 1], u[:, 0])),
            "brows_y": y(p[:, BROWS].mean(1)),
            "nose_y": y(p[:, NOSE_TIP]),
            "mouth_y": y(mouth),
            "chin_y": y(p[:, CHIN]),
            "nose_x": x(p[:, NOSE_TIP]),
            "mouth_x": x(mouth),
            "mouth_width": np.linalg.norm(p[:, 54] - p[:, 48], axis=1) / d,
            "jaw_width": np.linalg.norm(p[:, 16] - p[:, 0], axis=1) / d,
        }


def implausible_frames(points: np.ndarray, found: np.ndarray | None = None,
                       orientation: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Why each frame's landmarks are not a plausible face: reason -> (T,) bool.

    Reasons: ``degenerate`` (eyes within ``MIN_EYE_DISTANCE_PX``, or non-finite points), ``order``
    (brows, eyes, nose, mouth and chin not in that order down the face, or the nose or mouth far off the
    face's midline), ``proportions`` (mouth or jaw width out of range), ``roll`` (head rolled more than
    ``MAX_ROLL_DEG``: an upside-down or sideways face), ``jump`` (eye distance jumps against the frames
    around it), ``upside_down`` (from the image: ``orientation``, the track's detector scores, says the
    head is upside down under an upright-looking fit; see :func:`upside_down_frames`). Frames with
    ``found`` False (or NaN points) are never marked.
    """
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    valid = np.isfinite(p.reshape(n, -1)).all(axis=1) if n else np.zeros(0, bool)
    if found is not None:
        valid &= np.asarray(found, dtype=bool)
    reasons = ("degenerate", "order", "proportions", "roll", "upside_down", "jump")
    out = {k: np.zeros(n, bool) for k in reasons}
    if not valid.any():
        return out
    m = face_frame_measures(np.where(valid[:, None, None], p, 0.0))
    degenerate = valid & ~(m["eye_distance"] >= MIN_EYE_DISTANCE_PX)
    ok = valid & ~degenerate

    def outside(key: str) -> np.ndarray:
        lo, hi = PLAUSIBLE_BOUNDS[key]
        return ~((m[key] >= lo) & (m[key] <= hi))

    order = (outside("brows_y") | outside("nose_y") | outside("mouth_y") | outside("chin_y")
             | outside("nose_x") | outside("mouth_x")
             | ~(m["brows_y"] < m["nose_y"]) | ~(m["nose_y"] < m["mouth_y"]) | ~(m["mouth_y"] < m["chin_y"]))
    out["degenerate"] = degenerate
    out["order"] = ok & order
    out["proportions"] = ok & ~order & (outside("mouth_width") | outside("jaw_width"))
    out["roll"] = ok & ~order & (np.abs(m["roll_deg"]) > MAX_ROLL_DEG)
    good = ok & ~out["order"] & ~out["proportions"] & ~out["roll"]
    out["upside_down"] = good & upside_down_frames(orientation, n)
    good &= ~out["upside_down"]
    out["jump"] = good & _iod_jumps(m["eye_distance"], good)
    return out


def _iod_jumps(iod: np.ndarray, good: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(good)
    jumps = np.zeros(len(iod), bool)
    if len(idx) < 3:
        return jumps
    values = iod[idx]
    half = IOD_WINDOW // 2
    for j, i in enumerate(idx):
        lo, hi = np.searchsorted(idx, i - half), np.searchsorted(idx, i + half, side="right")
        ref = float(np.median(values[lo:hi]))
        ratio = values[j] / ref
        jumps[i] = ratio > MAX_IOD_JUMP or ratio < 1 / MAX_IOD_JUMP
    return jumps


def plausible_face(points: np.ndarray, orientation: tuple[float, float] | None = None) -> bool:
    """True when one (68, 2) landmark set is a plausible face (the per-frame checks, no ``jump``);
    ``orientation``: the detector's (as is, turned upside down) scores of its box, when measured."""
    o = None if orientation is None else np.asarray(orientation, dtype=np.float64).reshape(1, 2)
    reasons = implausible_frames(np.asarray(points)[None], orientation=o)
    return bool(np.isfinite(points).all()) and not any(r[0] for r in reasons.values())
