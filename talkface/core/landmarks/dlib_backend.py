"""dlib landmarks: HOG (or CNN) face detector + the 68-point shape predictor, with tracking.

Detecting costs many times what predicting the 68 points on a known box costs (docs/landmarks.md
renders the measured figures). ``track`` therefore detects on a subset
of frames and, in between, runs the predictor on a box derived from the previous frame's landmarks.
The mapping from landmark extent to the detector's box convention is learned on the clip's own
detected frames, so tracked landmarks agree with per-frame detection. The box is kept from one frame to
the next while the derived box stays within ``box_hysteresis`` (3%) of its size in position and size:
on a still face it then stays the detector's own box instead of following every small shift of the
landmarks' mean (the mouth opening moves it), which is as accurate as following it (measured on GRID:
docs/landmarks.md) and lets the predictions be batched (below). Tracking is abandoned (the frame
is re-detected) when the landmarks jump, the box leaves the image, the face patch stops resembling the
one seen at the last detection (a cut, a black frame), or every ``detect_interval`` frames.
Re-detection first searches a region around the last face (a few ms) and only then the whole frame.

The predictor is dlib's model evaluated by :mod:`talkface.core.landmarks.dlib_shape`, bit for bit
as dlib computes it, for many boxes at once (a batched prediction costs a fraction of a dlib call).
Since a tracked frame's box depends on the previous frame's points, ``track`` runs its frame-by-frame
logic over a chunk of frames as a fixed-point iteration: a prediction not yet computed is guessed (the
frame's last prediction, else the previous frame's points) and queued; the queue is computed in one
batch; the pass is repeated from the first frame that guessed, until a pass guesses nothing. That last
pass used only computed predictions, so the result is exactly the frame-by-frame tracker's. On GRID a
3 s clip takes about two passes and little more than one prediction per frame (docs/landmarks.md
renders the measured count). Detections (and the points of a detection,
on which the next boxes depend), orientation checks and face patches are computed when first needed
and kept for the later passes.

Detectors (``detector``): ``hog`` (dlib's HOG + linear SVM, the default), ``cnn`` (alias ``mmod``:
dlib's max-margin CNN, ``mmod_human_face_detector.dat``; finds faces in low light and near-profile
that HOG misses, at many times its CPU cost), or a comma-separated chain such as ``hog,cnn``: each full
detection tries the detectors in order and the next one runs only when the previous found nothing, so
the stronger detector costs time only on the frames the first one misses.

Face choice (``select``): ``score`` (default) keeps the detector's most confident face; ``largest``
keeps the largest box among the confident ones (``LARGEST_MIN_SCORE``): in-the-wild frames
(VoxCeleb) may show a second person, and the clip's speaker is the face the crop was centred on, the
largest. Frames where the detector saw several faces are counted in ``LandmarkTrack.info``
(``multiple_faces``); tracking between detections stays on the chosen face.

Model files come from the ``face_recognition_models`` package (no download at run time). The
68-point model is trained on iBUG 300-W: non-commercial use only.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import dlib
import numpy as np

from talkface.core.landmarks.base import (
    LandmarkBackend,
    LandmarkTrack,
    register_landmark_backend,
    upside_down,
)
from talkface.core.landmarks.dlib_models import MODEL_FILES, dlib_model_path
from talkface.core.landmarks.dlib_shape import BatchShapePredictor, UnsupportedModel, load_model
from talkface.core.landmarks.dlib_shape import cache_dir as shape_cache_dir
from talkface.utils.atomic import atomic_path
from talkface.utils.provenance import sha256_file

# Box from landmarks: (cx, cy, size) = (mx + dx * r, my + dy * r, k * r) with (mx, my) the landmarks'
# mean and r their RMS radius. These priors (measured on GRID and VoxCeleb-style frames with HOG boxes)
# are replaced by the clip's own averages as soon as a frame is detected.
_PRIOR_BOX = (0.0, -0.22, 3.1)
#: A CNN (MMOD) box mapped to HOG's box convention: (cx, cy, size) of the HOG box = (cx + dx * s, cy +
#: dy * s, k * s) with (cx, cy, s) the CNN box. Medians over 18 fixture frames (13 GRID s1, 5
#: VoxCeleb-style 00015) where both detectors found the face; spread (std) 0.08, 0.09, 0.13.
CNN_TO_HOG_BOX = (-0.011, 0.091, 1.093)
_PATCH = 24  # side of the grey patch compared between frames to notice a lost face
#: The orientation test (``base.upside_down``) scores the box of the fitted points (HOG's convention)
#: widened by ``ORIENTATION_CONTEXT`` and resized to ``ORIENTATION_SIDE`` px (grey), so that the box
#: spans HOG's 80 px window, with dlib's HOG detector as it is and turned upside down: two HOG runs on
#: a 96 px image. Narrower crops (1.1x at 88 px, 1.05x at 84 px) separated upright faces from
#: upside-down fits less well on the fixtures.
ORIENTATION_CONTEXT = 1.2
ORIENTATION_SIDE = 96
#: When neither way looks like a face (both scores under ``ORIENTATION_WIDE_BELOW``), the fit may cover
#: only part of an upside-down head (GRID s1 ``bgau1a`` turned over: eyes on the mouth, mouth on the
#: nostrils, scores -0.9 / -1.3), so the test is repeated on the box widened 1.8x at 144 px, where the
#: whole head turned over scores 0.6-1.3. Upright fixture faces score at least 0.43 as they are: it
#: never runs on them.
ORIENTATION_WIDE_CONTEXT = 1.8
ORIENTATION_WIDE_SIDE = 144
ORIENTATION_WIDE_BELOW = 0.0
#: ``track`` measures the orientation on every detection and on every ``orientation_interval``-th
#: tracked frame after it; a tracked frame measured upside down ends the track (the frame is detected
#: again, and the detection is refused when it too is upside down). What a measurement costs, and what
#: it adds to tracking at one frame in five, is measured by benchmarks/bench_orientation.py
#: (docs/landmarks.md renders it).
ORIENTATION_INTERVAL = 5
DETECTORS = ("hog", "cnn")
DETECTOR_ALIASES = {"mmod": "cnn"}
SELECTIONS = ("score", "largest")
#: With ``select="largest"``, the boxes a detector scores at least this (or its best box) are faces to
#: choose from. HOG: the best box of 180 fixture frames (GRID s1/s2/s23 and VoxCeleb-style, upsample 0
#: and 1) scored 0.71-2.8 with no second box; a VoxCeleb-style face scaled up 1.6x beside a small GRID
#: face scores 0.8 against the GRID face's 2.1, so a share of the best score would drop it.
LARGEST_MIN_SCORE = {"hog": 0.5, "cnn": 0.5}
#: ``track`` works on chunks of at most this many frames (and at most ``CHUNK_BYTES`` of them), which it
#: holds in memory while its passes run.
CHUNK_FRAMES = 100
CHUNK_BYTES = 64 << 20


def _hog_detector() -> Any:
    """dlib's HOG face detector, shared by the backends built in one thread (a detector holds scratch
    state while it runs, so threads do not share one)."""
    return _hog_for_thread(threading.get_ident())


@functools.lru_cache(maxsize=8)
def _hog_for_thread(thread: int) -> Any:
    # dlib builds its detector from a compressed text copy (a fraction of a second of CPU); the same
    # detector saved in dlib's own format loads in milliseconds (docs/landmarks.md renders both). Kept
    # beside the predictor's cache, per dlib version.
    saved = shape_cache_dir() / f"frontal_face_detector-dlib{dlib.__version__}.svm"
    if saved.exists():
        try:
            return dlib.fhog_object_detector(str(saved))
        except RuntimeError:
            pass  # a damaged file: build and save again
    detector = dlib.get_frontal_face_detector()
    try:
        with atomic_path(saved) as tmp:
            detector.save(str(tmp))
    except (OSError, RuntimeError):
        pass  # an unwritable cache folder only costs the slow build each time
    return detector


def parse_detectors(detector: str | Sequence[str]) -> tuple[str, ...]:
    """``"hog,cnn"`` -> ``("hog", "cnn")``; aliases resolved; a ValueError names the known detectors."""
    names = detector.split(",") if isinstance(detector, str) else list(detector)
    out: list[str] = []
    for raw in names:
        name = DETECTOR_ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if name not in DETECTORS:
            raise ValueError(f"unknown face detector {raw.strip()!r}: use hog, cnn (alias mmod) or a "
                             "chain such as hog,cnn")
        if name in out:
            raise ValueError(f"face detector {name!r} named twice in {detector!r}")
        out.append(name)
    if not out:
        raise ValueError("no face detector given: use hog, cnn or hog,cnn")
    return tuple(out)


@dataclass
class _Detection:
    rect: dlib.rectangle
    score: float
    upsample: int
    detector: str = "hog"
    n_faces: int = 1


@dataclass
class _Box:
    cx: float
    cy: float
    size: float

    def key(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of :meth:`rect`."""
        h = self.size / 2
        cx, cy = self.cx, self.cy
        return int(round(cx - h)), int(round(cy - h)), int(round(cx + h)), int(round(cy + h))

    def rect(self) -> dlib.rectangle:
        return dlib.rectangle(*self.key())

    @classmethod
    def from_rect(cls, r: dlib.rectangle) -> _Box:
        return cls((r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2, (r.width() + r.height()) / 2)

    def inside(self, shape: tuple[int, ...], slack: float = 0.1) -> bool:
        h = self.size / 2
        s = self.size * slack
        H, W = shape[:2]
        return self.cx - h > -s and self.cy - h > -s and self.cx + h < W + s and self.cy + h < H + s


def _stats(points: np.ndarray) -> tuple[float, float, float]:
    m = points.mean(0)
    r = float(np.sqrt(((points - m) ** 2).sum(1).mean()))
    return float(m[0]), float(m[1]), r


def _points_box(points: np.ndarray, stats: tuple[float, float, float] | None = None) -> _Box:
    """The HOG-convention box of 68 points by the fixed prior (``_PRIOR_BOX``): the box the
    orientation test scores (measured with it on the fixtures)."""
    mx, my, r = stats or _stats(points)
    dx, dy, k = _PRIOR_BOX
    return _Box(mx + dx * r, my + dy * r, k * r)


class DlibBackend(LandmarkBackend):
    """dlib face detector (``hog`` default, or ``cnn``) and 68-point shape predictor.

    ``upsample``: detector upsampling (0 finds faces of ~80 px and larger; full-frame searches that
    find nothing retry once at upsample 1). ``detect_interval``: re-detect at least every N frames
    while tracking (1 = detect every frame, the naive loop). ``max_jump``: re-detect when tracked
    landmarks move more than this fraction of the face radius between frames. ``min_patch_corr``:
    re-detect when the face patch's correlation with the last detected one falls below this.
    ``check_orientation``: refuse a detection whose box scores higher turned upside down (see
    ``_upside_down``), and end a track whose box does (measured every ``orientation_interval`` tracked
    frames); such frames count as no face and are reported in ``LandmarkTrack.rejected``, and the
    scores in ``LandmarkTrack.orientation``.
    ``detector``: ``hog``, ``cnn`` (``mmod``) or a chain ``hog,cnn`` (see the module docstring);
    ``select``: ``score`` or ``largest``.
    """

    name = "dlib"

    def __init__(
        self,
        detector: str = "hog",
        upsample: int = 0,
        detect_interval: int = 25,
        max_jump: float = 0.25,
        min_patch_corr: float = 0.6,
        roi_margin: float = 1.6,
        predictor_path: str | None = None,
        cnn_path: str | None = None,
        check_orientation: bool = True,
        select: str = "score",
        box_hysteresis: float = 0.03,
        orientation_interval: int = ORIENTATION_INTERVAL,
    ) -> None:
        self.box_hysteresis = float(box_hysteresis)
        if orientation_interval < 1:
            raise ValueError("orientation_interval must be >= 1")
        self.orientation_interval = int(orientation_interval)
        self.detectors = parse_detectors(detector)
        if select not in SELECTIONS:
            raise ValueError(f"face selection must be one of {', '.join(SELECTIONS)}, not {select!r}")
        if detect_interval < 1:
            raise ValueError("detect_interval must be >= 1")
        self.detector_name = ",".join(self.detectors)
        self.select = select
        self.upsample = int(upsample)
        self.detect_interval = int(detect_interval)
        self.max_jump = float(max_jump)
        self.min_patch_corr = float(min_patch_corr)
        self.roi_margin = float(roi_margin)
        self.check_orientation = bool(check_orientation)
        self.predictor_path = str(predictor_path or dlib_model_path("shape_68"))
        try:
            self._shapes: Any = BatchShapePredictor(load_model(self.predictor_path,
                                                               sha256_file(self.predictor_path)))
        except UnsupportedModel:  # a model file laid out otherwise: dlib's own predictor, one box a call
            self._shapes = _DlibShapes(dlib.shape_predictor(self.predictor_path))
        self.cnn_path: str | None = None
        if "cnn" in self.detectors:
            self.cnn_path = str(cnn_path or dlib_model_path("cnn_detector"))
            self._cnn = dlib.cnn_face_detection_model_v1(self.cnn_path)
        if "hog" in self.detectors or self.check_orientation:
            self._hog = _hog_detector()  # the orientation test always uses HOG (cheap on a 96 px crop)

    # -- settings -----------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.name,
            "detector": self.detector_name,
            "upsample": self.upsample,
            "detect_interval": self.detect_interval,
            "max_jump": self.max_jump,
            "min_patch_corr": self.min_patch_corr,
            "roi_margin": self.roi_margin,
            "check_orientation": self.check_orientation,
            "predictor_model": MODEL_FILES["shape_68"],
            "predictor_sha256": sha256_file(self.predictor_path),
            "dlib_version": dlib.__version__,
        }
        if self.box_hysteresis:  # 0 is the tracker of datasets prepared before it, which then still match
            out["box_hysteresis"] = self.box_hysteresis
        if self.check_orientation:
            out["orientation"] = {"test": "hog_box_turned", "context": ORIENTATION_CONTEXT,
                                  "side": ORIENTATION_SIDE, "wide_context": ORIENTATION_WIDE_CONTEXT,
                                  "wide_side": ORIENTATION_WIDE_SIDE, "wide_below": ORIENTATION_WIDE_BELOW,
                                  "interval": self.orientation_interval}
        if self.select != "score":  # recorded only when not the default, so older datasets still match
            out["select"] = self.select
            out["largest_min_score"] = {d: LARGEST_MIN_SCORE[d] for d in self.detectors}
        if self.cnn_path:
            out["cnn_box_to_hog"] = list(CNN_TO_HOG_BOX)  # then re-boxed from its points (_landmarks)
            out["cnn_model"] = MODEL_FILES["cnn_detector"]
            out["cnn_sha256"] = sha256_file(self.cnn_path)
        return out

    # -- primitives ---------------------------------------------------------------------------
    def _run_detector(
        self, name: str, image: np.ndarray, upsample: int
    ) -> list[tuple[dlib.rectangle, float]]:
        """Every box one detector finds, with its score (HOG SVM margin or CNN confidence)."""
        if name == "cnn":
            return [(d.rect, float(d.confidence)) for d in self._cnn(image, upsample)]
        boxes, scores, _ = self._hog.run(image, upsample, 0)
        return [(b, float(s)) for b, s in zip(boxes, scores, strict=True)]

    def _choose(
        self, found: list[tuple[dlib.rectangle, float]], detector: str
    ) -> tuple[dlib.rectangle, float]:
        """The face to keep: the best-scoring (HOG with upsampling can add spurious low-score boxes), or
        with ``select="largest"`` the largest box scoring at least ``LARGEST_MIN_SCORE``."""
        best = max(found, key=lambda f: f[1])
        if self.select == "score" or len(found) == 1:
            return best
        floor = min(LARGEST_MIN_SCORE[detector], best[1])
        confident = [f for f in found if f[1] >= floor]
        return max(confident, key=lambda f: (f[0].width() * f[0].height(), f[1]))

    def _detect_boxes(
        self, image: np.ndarray, upsample: int, detectors: Sequence[str] | None = None
    ) -> _Detection | None:
        """The chosen face of the first detector in the chain that finds one."""
        for name in detectors or self.detectors:
            found = self._run_detector(name, image, upsample)
            if found:
                rect, score = self._choose(found, name)
                return _Detection(rect, score, upsample, name, len(found))
        return None

    def _detect_full(self, image: np.ndarray, retry_upsample: bool = True) -> _Detection | None:
        for name in self.detectors:
            det = self._detect_boxes(image, self.upsample, (name,))
            if det is None and retry_upsample and self.upsample == 0:
                det = self._detect_boxes(image, 1, (name,))
            if det is not None:
                return det
        return None

    def _roi(self, image: np.ndarray, near: _Box) -> tuple[int, int, np.ndarray] | None:
        """The square region ``roi_margin`` times the box around ``near`` (None when under 80 px)."""
        h = near.size * self.roi_margin / 2
        H, W = image.shape[:2]
        x0, y0 = max(int(near.cx - h), 0), max(int(near.cy - h), 0)
        x1, y1 = min(int(near.cx + h), W), min(int(near.cy + h), H)
        if x1 - x0 < 80 or y1 - y0 < 80:
            return None
        return x0, y0, np.ascontiguousarray(image[y0:y1, x0:x1])

    def _detect_near(self, image: np.ndarray, near: _Box) -> _Detection | None:
        """Search only a square region around the last face: a few ms instead of the whole frame."""
        roi = self._roi(image, near)
        if roi is None:
            return None
        x0, y0, patch = roi
        det = self._detect_boxes(patch, 0)
        if det is None:
            return None
        box = det.rect
        det.rect = dlib.rectangle(box.left() + x0, box.top() + y0, box.right() + x0, box.bottom() + y0)
        return det

    def _upside_down(self, image: np.ndarray, det: _Detection) -> bool:
        """True when the face fitted in a detection's box scores higher turned upside down
        (``base.upside_down``; the fan backend asks this of its boxes).

        The 68-point predictor always draws an upright face inside the box it is given, so an
        upside-down face (whose box the detector may still find, with a low score) would get eyes and
        a mouth on its forehead with a face-like geometry that no geometric check can refuse.
        """
        points = self._landmarks(image, det)[0]
        return bool(upside_down(*self._orientation_scores(image, _points_box(points))))

    def _orientation_scores(self, image: np.ndarray, box: _Box) -> tuple[float, float]:
        """HOG's best score in the box as it is and turned upside down (``ORIENTATION_CONTEXT``).

        ``box``: the box of the fitted points (:func:`_points_box`), not the detector's: on an
        upside-down head the detector's weak box sits low on the face, and turned over it cuts the
        face; the fitted points span the whole head (the mouth on the forehead, the jaw in the hair).
        """
        scores = self._box_scores(image, box, ORIENTATION_CONTEXT, ORIENTATION_SIDE)
        if max(scores) < ORIENTATION_WIDE_BELOW:
            scores = self._box_scores(image, box, ORIENTATION_WIDE_CONTEXT, ORIENTATION_WIDE_SIDE)
        return scores

    def _box_scores(self, image: np.ndarray, box: _Box, context: float, size: int) -> tuple[float, float]:
        """HOG's best score in the box widened by ``context`` at ``size`` px, as it is and turned over."""
        side = max(int(round(box.size * context)), 8)
        x0, y0 = int(round(box.cx - side / 2)), int(round(box.cy - side / 2))
        H, W = image.shape[:2]
        crop = image[max(y0, 0):max(min(y0 + side, H), 0), max(x0, 0):max(min(x0 + side, W), 0)]
        if crop.shape[0] < 2 or crop.shape[1] < 2:
            return float("nan"), float("nan")
        if crop.ndim == 3:
            crop = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
        top, left = max(-y0, 0), max(-x0, 0)
        bottom, right = side - top - crop.shape[0], side - left - crop.shape[1]
        if top or left or bottom > 0 or right > 0:  # the box reaches past the frame: repeat its edge
            crop = cv2.copyMakeBorder(crop, top, max(bottom, 0), left, max(right, 0), cv2.BORDER_REPLICATE)
        small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        floor = -5.0  # dlib reports windows scoring above this; a face scores above -1.5
        as_is = max(self._hog.run(small, 0, floor)[1], default=floor)
        turned = max(self._hog.run(np.ascontiguousarray(small[::-1]), 0, floor)[1], default=floor)
        return float(as_is), float(turned)

    def _predict(self, image: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
        return self._shapes([image], [_rect_key(rect)])[0]

    def _landmarks(self, image: np.ndarray, det: _Detection, predict: Any = None
                   ) -> tuple[np.ndarray, dlib.rectangle]:
        """68 points for a detection, and the box (in HOG's convention) they were predicted in.

        The 68-point predictor was trained on HOG boxes; a CNN (MMOD) box is placed and sized
        differently (about 9% smaller and 9% of its size higher), and its points are off by 1.9 px
        on average, 13 px at worst (a GRID frame whose box cuts the chin: the mouth lands on the
        nose). So a CNN box is first mapped to HOG's convention (``CNN_TO_HOG_BOX``), then re-boxed
        once from its points as tracking boxes them (``_PRIOR_BOX``) and predicted again. Against
        HOG's points on 26 held-out fixture frames (20 GRID s1, 6 VoxCeleb-style 00098): raw 1.90 px
        mean / 13.0 max, mapped 0.72 / 1.54, mapped and re-boxed 0.68 / 1.24.
        """
        predict = predict or self._predict
        if det.detector != "cnn":
            return predict(image, det.rect), det.rect
        cb = _Box.from_rect(det.rect)
        dx, dy, k = CNN_TO_HOG_BOX
        pts = predict(image, _Box(cb.cx + dx * cb.size, cb.cy + dy * cb.size, k * cb.size).rect())
        mx, my, r = _stats(pts)
        dx, dy, k = _PRIOR_BOX
        rect = _Box(mx + dx * r, my + dy * r, k * r).rect()
        return predict(image, rect), rect

    @staticmethod
    def _patch(image: np.ndarray, box: _Box) -> np.ndarray | None:
        """A small zero-mean, unit-norm grey patch of the box, or None when it is flat (no face)."""
        left, top, right, bottom = box.key()
        H, W = image.shape[:2]
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, W), min(bottom, H)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        small = cv2.resize(image[y0:y1, x0:x1], (_PATCH, _PATCH), interpolation=cv2.INTER_AREA)
        small = small.astype(np.float32)
        if small.ndim == 3:
            small = small.mean(2)
        small = small - small.mean()
        norm = float(np.linalg.norm(small))
        if norm < 1.0 * _PATCH:  # std below ~1 grey level: a blank frame
            return None
        return small / norm

    # -- public API ---------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) landmarks of the best-scoring face in an RGB (or grey) uint8 image, or None."""
        image = np.ascontiguousarray(image)
        det = self._detect_full(image)
        if det is None:
            return None
        pts = self._landmarks(image, det)[0]
        if self.check_orientation and upside_down(*self._orientation_scores(image, _points_box(pts))):
            return None
        return pts

    def track(self, frames: Iterable[np.ndarray]) -> LandmarkTrack:
        """Landmarks of a frame stream: detect on some frames, track with the predictor in between."""
        state = _TrackState()
        for chunk in _chunks(frames):
            self._track_chunk(chunk, state)
        n = len(state.points)
        points = np.stack(state.points) if n else np.zeros((0, 68, 2), np.float32)
        orientation = None
        if self.check_orientation:
            orientation = np.array(state.orientation, np.float32).reshape(n, 2)
        return LandmarkTrack(
            points=points, face_found=np.array(state.found, bool), detected=np.array(state.detected, bool),
            rejected=state.rejected, info=state.info, orientation=orientation,
        )

    def _track_chunk(self, frames: np.ndarray, state: _TrackState) -> None:
        """Track ``frames`` from ``state`` (updated): passes of the frame-by-frame logic until one uses
        only computed predictions (see the module docstring). Each pass starts at the first frame where
        the previous one guessed: everything before it is final."""
        work = _ChunkWork(self, frames)
        start, trial = 0, state.copy()
        while True:
            resume = self._track_pass(work, trial, start)
            if resume is None:
                state.__dict__.update(trial.__dict__)
                return
            start, trial = resume
            work.run_pending()

    def _track_pass(self, work: _ChunkWork, st: _TrackState, start: int = 0
                    ) -> tuple[int, _TrackState] | None:
        """One pass of the frame-by-frame tracker over a chunk from frame ``start`` (predictions through
        ``work``). Returns None when it used no guess, else the first frame that did and the state
        before it."""
        nan = np.full((68, 2), np.nan, np.float32)
        resume: tuple[int, _TrackState] | None = None
        unmeasured = (np.nan, np.nan)
        for t in range(start, len(work.frames)):
            before = st.copy() if resume is None else None
            n_pending = len(work.pending)
            pts: np.ndarray | None = None
            did_detect = False
            scores = unmeasured
            # The orientation is measured only on computed points: a frame after the first guess of
            # a pass is computed again in the next pass (measuring guesses would cost twice).
            final = resume is None and len(work.pending) == n_pending
            if st.last_pts is not None and st.since_detect < self.detect_interval:
                pts = self._track_one(work, t, st, st.ratio_sums / max(st.n_ratio, 1), st.ref_patch)
                final = final and len(work.pending) == n_pending
                check = self.check_orientation and st.since_detect % self.orientation_interval == 0
                if pts is not None and check and final:
                    # Every detection was checked, but a check can be wrong: the track is checked
                    # again now and then, and ends (the frame is detected again) when upside down.
                    scores = work.orientation(t, pts)
                    if upside_down(*scores):
                        pts = None
            if pts is None:
                did_detect = True
                det = work.detect_near(t, st.last_box) if st.last_box is not None else None
                if det is None:
                    # In a no-face stretch, the costly upsampled retry runs only every detect_interval.
                    det = work.detect_full(t, retry_upsample=st.misses % self.detect_interval == 0)
                fitted = work.landmarks(t, det, st.last_pts) if det is not None else None
                final = final and len(work.pending) == n_pending
                # Every detection is checked, the periodic re-detection of a tracked face too: a
                # wrongly accepted upside-down face would otherwise be followed for good.
                if fitted is not None and self.check_orientation and final:
                    scores = work.orientation(t, fitted[0])
                    if upside_down(*scores):
                        st.rejected["upside_down"] = st.rejected.get("upside_down", 0) + 1
                        det, fitted = None, None
                if det is not None and fitted is not None:
                    if det.n_faces > 1:
                        st.info["multiple_faces"] = st.info.get("multiple_faces", 0) + 1
                    if len(self.detectors) > 1:
                        key = f"detected_by_{det.detector}"
                        st.info[key] = st.info.get(key, 0) + 1
                    pts, rect = fitted
                    box = _Box.from_rect(rect)
                    mx, my, r = work.stats(pts)
                    st.ratio_sums = st.ratio_sums + ((box.cx - mx) / r, (box.cy - my) / r, box.size / r)
                    st.n_ratio += 1
                    st.ref_patch = work.patch(t, box)
                    st.last_box = box
                    st.track_box = box
                    st.since_detect = 0
            if pts is None:
                st.misses += 1
                st.last_pts, st.ref_patch, st.track_box = None, None, None
                st.points.append(nan)
                st.found.append(False)
            else:
                st.misses = 0
                st.last_pts = pts
                st.since_detect += 1
                st.points.append(pts)
                st.found.append(True)
            st.detected.append(did_detect)
            st.orientation.append(scores)
            if before is not None and len(work.pending) > n_pending:
                resume = (t, before)
        return resume

    def _track_one(
        self, work: _ChunkWork, t: int, st: _TrackState, ratios: np.ndarray, ref_patch: np.ndarray | None
    ) -> np.ndarray | None:
        """Predictor on the box derived from the previous landmarks; None when tracking looks lost."""
        last_pts = st.last_pts
        mx, my, r = work.stats(last_pts)
        dx, dy, k = ratios if ratios[2] > 0 else _PRIOR_BOX
        box = _Box(mx + dx * r, my + dy * r, k * r)
        prev = st.track_box
        if prev is not None and self.box_hysteresis > 0:
            lim = self.box_hysteresis * prev.size
            if max(abs(box.cx - prev.cx), abs(box.cy - prev.cy), abs(box.size - prev.size)) <= lim:
                box = prev  # the face has not moved enough: keep the box (see the module docstring)
        st.track_box = box
        if not box.inside(work.frames[t].shape):
            return None
        pts = work.predict(t, box.key(), guess=last_pts)
        step = pts - last_pts
        if float(np.sqrt(np.einsum("ij,ij->i", step, step)).mean()) > self.max_jump * r:
            return None
        patch = work.patch(t, box)
        if patch is None or ref_patch is None or float((patch * ref_patch).sum()) < self.min_patch_corr:
            return None
        return pts


def _rect_key(rect: dlib.rectangle) -> tuple[int, int, int, int]:
    return (rect.left(), rect.top(), rect.right(), rect.bottom())


class _DlibShapes:
    """dlib's own predictor behind the batch interface (for model files ``dlib_shape`` cannot read)."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray, rects: Sequence[tuple[int, int, int, int]],
                 index: np.ndarray | None = None) -> np.ndarray:
        if index is not None:
            images = [images[i] for i in index]
        out = []
        for im, r in zip(images, rects, strict=True):
            shape = self.predictor(np.ascontiguousarray(im), dlib.rectangle(*r))
            out.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
        return np.stack(out) if out else np.zeros((0, 68, 2), np.float32)


@dataclass
class _TrackState:
    """The tracker's state between frames, and its output so far."""

    last_pts: np.ndarray | None = None
    last_box: _Box | None = None
    track_box: _Box | None = None
    ref_patch: np.ndarray | None = None
    since_detect: int = 0
    misses: int = 0
    ratio_sums: np.ndarray = field(default_factory=lambda: np.zeros(3))
    n_ratio: int = 0
    points: list[np.ndarray] = field(default_factory=list)
    found: list[bool] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    info: dict[str, int] = field(default_factory=dict)
    orientation: list[tuple[float, float]] = field(default_factory=list)

    def copy(self) -> _TrackState:
        """A copy that later frames do not change (arrays and boxes are replaced, never modified)."""
        return _TrackState(self.last_pts, self.last_box, self.track_box, self.ref_patch, self.since_detect,
                           self.misses, self.ratio_sums, self.n_ratio, list(self.points), list(self.found),
                           list(self.detected), dict(self.rejected), dict(self.info), list(self.orientation))


def _chunks(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames as stacked arrays of at most ``CHUNK_FRAMES`` frames and ``CHUNK_BYTES`` bytes
    (a new stack whenever the frame size changes)."""
    chunk: list[np.ndarray] = []
    size = 0
    for frame in frames:
        if chunk and (frame.shape != chunk[0].shape or frame.dtype != chunk[0].dtype):
            yield np.stack(chunk)
            chunk, size = [], 0
        chunk.append(frame)
        size += frame.nbytes
        if len(chunk) >= CHUNK_FRAMES or size >= CHUNK_BYTES:
            yield np.stack(chunk)
            chunk, size = [], 0
    if chunk:
        yield np.stack(chunk)


class _ChunkWork:
    """What the passes over one chunk compute, each thing once: predictions (batched between passes),
    detections, orientation checks and face patches."""

    def __init__(self, backend: DlibBackend, frames: np.ndarray) -> None:
        self.backend = backend
        self.frames = frames
        self.shapes: dict[tuple[int, tuple[int, int, int, int]], np.ndarray] = {}
        self.latest: dict[int, np.ndarray] = {}
        self.pending: dict[tuple[int, tuple[int, int, int, int]], None] = {}
        self.memo: dict[tuple, Any] = {}
        self.stats_of: dict[int, tuple[np.ndarray, tuple[float, float, float]]] = {}

    def predict(self, t: int, rect: dlib.rectangle | tuple[int, int, int, int], guess: np.ndarray | None
                ) -> np.ndarray:
        """Frame ``t``'s points in ``rect``, or when not computed yet a guess (the frame's last
        prediction, else ``guess``; computed now when there is neither), asked for in the next batch."""
        key = (t, rect if isinstance(rect, tuple) else _rect_key(rect))
        found = self.shapes.get(key)
        if found is not None:
            return found
        guess = self.latest.get(t, guess)
        if guess is None:
            self._compute([key])
            return self.shapes[key]
        self.pending[key] = None
        return guess

    def run_pending(self) -> None:
        keys = list(self.pending)
        self.pending.clear()
        self._compute(keys)

    def _compute(self, keys: list[tuple[int, tuple[int, int, int, int]]]) -> None:
        index = np.array([t for t, _ in keys], dtype=np.intp)
        pts = self.backend._shapes(self.frames, [r for _, r in keys], index)
        for key, p in zip(keys, pts, strict=True):
            self.shapes[key] = p
            self.latest[key[0]] = p

    def landmarks(self, t: int, det: _Detection, previous: np.ndarray | None
                  ) -> tuple[np.ndarray, dlib.rectangle]:
        """A detection's points. Tracking uses them at once (box ratios, the next frames' boxes), so
        they are computed now; with ``detect_interval`` 1 (no tracking) they are guessed from
        ``previous`` (the last frame's points) and batched."""
        if self.backend.detect_interval == 1 and det.detector != "cnn" and previous is not None:
            return self.predict(t, det.rect, previous), det.rect

        def now(image: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
            key = (t, _rect_key(rect))
            if key not in self.shapes:
                self._compute([key])
            return self.shapes[key]

        return self.backend._landmarks(self.frames[t], det, now)

    def stats(self, pts: np.ndarray) -> tuple[float, float, float]:
        """:func:`_stats` of a prediction, computed once per array."""
        found = self.stats_of.get(id(pts))
        if found is None or found[0] is not pts:
            found = (pts, _stats(pts))
            self.stats_of[id(pts)] = found
        return found[1]

    def _memo(self, key: tuple, make: Any) -> Any:
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def detect_near(self, t: int, near: _Box) -> _Detection | None:
        return self._memo((t, "near", near.cx, near.cy, near.size),
                          lambda: self.backend._detect_near(self.frames[t], near))

    def detect_full(self, t: int, retry_upsample: bool) -> _Detection | None:
        return self._memo((t, "full", retry_upsample),
                          lambda: self.backend._detect_full(self.frames[t], retry_upsample=retry_upsample))

    def orientation(self, t: int, pts: np.ndarray) -> tuple[float, float]:
        """The orientation scores of the box of frame ``t``'s points ``pts`` (:func:`_points_box`)."""
        box = _points_box(pts, self.stats(pts))
        return self._memo((t, "orientation", box.key()),
                          lambda: self.backend._orientation_scores(self.frames[t], box))

    def patch(self, t: int, box: _Box) -> np.ndarray | None:
        return self._memo((t, "patch", box.key()), lambda: self.backend._patch(self.frames[t], box))


@register_landmark_backend("dlib")
def _make_dlib(**options: Any) -> DlibBackend:
    return DlibBackend(**options)
