"""dlib landmarks: HOG (or CNN) face detector + the 68-point shape predictor, with tracking.

Detecting on every frame costs ~10-33 ms per frame (HOG); the 68-point predictor alone costs ~1-2 ms.
``track`` therefore detects on a subset of frames and, in between, runs the predictor on a box derived
from the previous frame's landmarks. The mapping from landmark extent to the detector's box convention
is learned on the clip's own detected frames, so tracked landmarks agree with per-frame detection.
Tracking is abandoned (the frame is re-detected) when the landmarks jump, the box leaves the image, the
face patch stops resembling the one seen at the last detection (a cut, a black frame), or every
``detect_interval`` frames. Re-detection first searches a region around the last face (a few ms)
and only then the whole frame.

Model files come from the ``face_recognition_models`` package (no download at run time). The
68-point model is trained on iBUG 300-W: non-commercial use only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import dlib
import numpy as np

from talkface.preprocess.landmarks.base import LandmarkBackend, LandmarkTrack, register_landmark_backend
from talkface.preprocess.landmarks.dlib_models import MODEL_FILES, dlib_model_path
from talkface.utils.provenance import sha256_file

# Box from landmarks: (cx, cy, size) = (mx + dx * r, my + dy * r, k * r) with (mx, my) the landmarks'
# mean and r their RMS radius. These priors (measured on GRID and VoxCeleb-style frames with HOG boxes)
# are replaced by the clip's own averages as soon as a frame is detected.
_PRIOR_BOX = (0.0, -0.22, 3.1)
_PATCH = 24  # side of the grey patch compared between frames to notice a lost face
#: A detection is upside down when the region turned over scores this much more than as it is.
ORIENTATION_MARGIN = 0.5


@dataclass
class _Detection:
    rect: dlib.rectangle
    score: float
    upsample: int


@dataclass
class _Box:
    cx: float
    cy: float
    size: float

    def rect(self) -> dlib.rectangle:
        h = self.size / 2
        return dlib.rectangle(
            int(round(self.cx - h)), int(round(self.cy - h)), int(round(self.cx + h)), int(round(self.cy + h))
        )

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


class DlibBackend(LandmarkBackend):
    """dlib face detector (``hog`` default, or ``cnn``) and 68-point shape predictor.

    ``upsample``: detector upsampling (0 finds faces of ~80 px and larger; full-frame searches that
    find nothing retry once at upsample 1). ``detect_interval``: re-detect at least every N frames
    while tracking (1 = detect every frame, the naive loop). ``max_jump``: re-detect when tracked
    landmarks move more than this fraction of the face radius between frames. ``min_patch_corr``:
    re-detect when the face patch's correlation with the last detected one falls below this.
    ``check_orientation``: refuse a detection whose region scores higher turned upside down (see
    ``_upside_down``); such frames count as no face and are reported in ``LandmarkTrack.rejected``.
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
    ) -> None:
        if detector not in ("hog", "cnn"):
            raise ValueError(f"detector must be 'hog' or 'cnn', not {detector!r}")
        if detect_interval < 1:
            raise ValueError("detect_interval must be >= 1")
        self.detector_name = detector
        self.upsample = int(upsample)
        self.detect_interval = int(detect_interval)
        self.max_jump = float(max_jump)
        self.min_patch_corr = float(min_patch_corr)
        self.roi_margin = float(roi_margin)
        self.check_orientation = bool(check_orientation)
        self.predictor_path = str(predictor_path or dlib_model_path("shape_68"))
        self._predictor = dlib.shape_predictor(self.predictor_path)
        self.cnn_path: str | None = None
        if detector == "cnn":
            self.cnn_path = str(cnn_path or dlib_model_path("cnn_detector"))
            self._cnn = dlib.cnn_face_detection_model_v1(self.cnn_path)
        else:
            self._hog = dlib.get_frontal_face_detector()

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
        if self.cnn_path:
            out["cnn_model"] = MODEL_FILES["cnn_detector"]
            out["cnn_sha256"] = sha256_file(self.cnn_path)
        return out

    # -- primitives ---------------------------------------------------------------------------
    def _detect_boxes(self, image: np.ndarray, upsample: int) -> tuple[dlib.rectangle | None, float]:
        """The best-scoring face box (HOG with upsampling can add spurious low-score boxes)."""
        if self.detector_name == "cnn":
            dets = self._cnn(image, upsample)
            if len(dets) == 0:
                return None, float("-inf")
            best = max(dets, key=lambda d: d.confidence)
            return best.rect, float(best.confidence)
        boxes, scores, _ = self._hog.run(image, upsample, 0)
        if len(boxes) == 0:
            return None, float("-inf")
        i = int(np.argmax(scores))
        return boxes[i], float(scores[i])

    def _detect_full(self, image: np.ndarray, retry_upsample: bool = True) -> _Detection | None:
        box, score = self._detect_boxes(image, self.upsample)
        if box is not None:
            return _Detection(box, score, self.upsample)
        if retry_upsample and self.upsample == 0:
            box, score = self._detect_boxes(image, 1)
            if box is not None:
                return _Detection(box, score, 1)
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
        box, score = self._detect_boxes(patch, 0)
        if box is None:
            return None
        rect = dlib.rectangle(box.left() + x0, box.top() + y0, box.right() + x0, box.bottom() + y0)
        return _Detection(rect, score, 0)

    def _upside_down(self, image: np.ndarray, det: _Detection) -> bool:
        """True when the detector scores the region turned upside down higher than as it is.

        The 68-point predictor always draws an upright face inside the box it is given, so an
        upside-down face (whose box the detector may still find, with a low score) would get eyes and
        a mouth on its forehead with a face-like geometry that no geometric check can refuse. Upright
        faces score 1.5-2.8 as they are and at most 0.3 turned over (GRID and VoxCeleb-style
        fixtures); an upside-down GRID face scores 0.0-0.3 as it is and 2.0-2.7 turned over.
        """
        roi = self._roi(image, _Box.from_rect(det.rect))
        if roi is None:
            return False
        _, flipped_score = self._detect_boxes(np.ascontiguousarray(roi[2][::-1]), det.upsample)
        return flipped_score > det.score + ORIENTATION_MARGIN

    def _predict(self, image: np.ndarray, rect: dlib.rectangle) -> np.ndarray:
        shape = self._predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    @staticmethod
    def _patch(image: np.ndarray, box: _Box) -> np.ndarray | None:
        """A small zero-mean, unit-norm grey patch of the box, or None when it is flat (no face)."""
        r = box.rect()
        H, W = image.shape[:2]
        x0, y0, x1, y1 = max(r.left(), 0), max(r.top(), 0), min(r.right(), W), min(r.bottom(), H)
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
        if det is None or (self.check_orientation and self._upside_down(image, det)):
            return None
        return self._predict(image, det.rect)

    def track(self, frames: Iterable[np.ndarray]) -> LandmarkTrack:
        """Landmarks of a frame stream: detect on some frames, track with the predictor in between."""
        pts_out: list[np.ndarray] = []
        found: list[bool] = []
        detected: list[bool] = []
        nan = np.full((68, 2), np.nan, np.float32)
        ratio_sums = np.zeros(3)
        n_ratio = 0
        last_pts: np.ndarray | None = None
        last_box: _Box | None = None
        ref_patch: np.ndarray | None = None
        since_detect = 0
        misses = 0
        rejected: dict[str, int] = {}

        for frame in frames:
            image = np.ascontiguousarray(frame)
            pts: np.ndarray | None = None
            did_detect = False
            if last_pts is not None and since_detect < self.detect_interval:
                pts = self._track_one(image, last_pts, ratio_sums / max(n_ratio, 1), ref_patch)
            if pts is None:
                did_detect = True
                det = self._detect_near(image, last_box) if last_box is not None else None
                if det is None:
                    # In a no-face stretch, the costly upsampled retry runs only every detect_interval.
                    det = self._detect_full(image, retry_upsample=misses % self.detect_interval == 0)
                if det is not None and self.check_orientation and self._upside_down(image, det):
                    rejected["upside_down"] = rejected.get("upside_down", 0) + 1
                    det = None
                if det is not None:
                    pts = self._predict(image, det.rect)
                    box = _Box.from_rect(det.rect)
                    mx, my, r = _stats(pts)
                    ratio_sums += ((box.cx - mx) / r, (box.cy - my) / r, box.size / r)
                    n_ratio += 1
                    ref_patch = self._patch(image, box)
                    last_box = box
                    since_detect = 0
            if pts is None:
                misses += 1
                last_pts, ref_patch = None, None
                pts_out.append(nan)
                found.append(False)
            else:
                misses = 0
                last_pts = pts
                since_detect += 1
                pts_out.append(pts)
                found.append(True)
            detected.append(did_detect)

        n = len(pts_out)
        points = np.stack(pts_out) if n else np.zeros((0, 68, 2), np.float32)
        return LandmarkTrack(
            points=points, face_found=np.array(found, bool), detected=np.array(detected, bool),
            rejected=rejected,
        )

    def _track_one(
        self, image: np.ndarray, last_pts: np.ndarray, ratios: np.ndarray, ref_patch: np.ndarray | None
    ) -> np.ndarray | None:
        """Predictor on the box derived from the previous landmarks; None when tracking looks lost."""
        mx, my, r = _stats(last_pts)
        dx, dy, k = ratios if ratios[2] > 0 else _PRIOR_BOX
        box = _Box(mx + dx * r, my + dy * r, k * r)
        if not box.inside(image.shape):
            return None
        pts = self._predict(image, box.rect())
        if float(np.sqrt(((pts - last_pts) ** 2).sum(1)).mean()) > self.max_jump * r:
            return None
        patch = self._patch(image, box)
        if patch is None or ref_patch is None or float((patch * ref_patch).sum()) < self.min_patch_corr:
            return None
        return pts


@register_landmark_backend("dlib")
def _make_dlib(**options: Any) -> DlibBackend:
    return DlibBackend(**options)
