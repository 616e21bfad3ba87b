"""Compute talkface's canonical 68-point face template from real frames of several people.

    python scripts/compute_face_template.py [--fixtures DIR] [--out talkface/data/face_template_68.json]

Speakers: every speaker in the shared fixtures (GRID s1, s2, s23 and the two VoxCeleb-style clips).
Landmarks come from the dlib backend (HOG + 68-point predictor, tracked). Method:

1. per speaker, generalised Procrustes analysis (GPA, similarity: translation, rotation, scale) of
   that speaker's frames gives the speaker's mean face;
2. GPA of the speaker means (each speaker weighs the same, however many frames they have);
3. normalisation to the unit square: rotate so the line through the two eye centres (means of points
   36-41 and 42-47) is horizontal; scale so the outer-eye-corner distance (points 36, 45) is
   ``IOD_FRACTION`` of the crop side; translate so the centre of the 68 points' bounding box lies at
   ``CENTRE``. The crop then holds the whole face (jaw, brows) with a margin and some forehead.

Crop pixels = template * crop_size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkface import __version__  # noqa: E402
from talkface.core.alignment import estimate_similarity  # noqa: E402
from talkface.core.landmarks.dlib_backend import DlibBackend  # noqa: E402
from talkface.core.media import iter_frames  # noqa: E402
from talkface.utils.atomic import write_json  # noqa: E402
from talkface.utils.fixtures import fixtures_dir  # noqa: E402

IOD_FRACTION = 0.40
CENTRE = (0.5, 0.5)
FRAME_STEP = 3  # every 3rd frame: neighbouring frames add little
S1_CLIPS = 25  # the first 25 s1 fixture clips are plenty for one speaker's mean


def gpa(shapes: np.ndarray, iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Generalised Procrustes mean (similarity) of (N, 68, 2) shapes; unit-norm, centred result."""
    shapes = shapes - shapes.mean(1, keepdims=True)
    shapes = shapes / np.linalg.norm(shapes, axis=(1, 2), keepdims=True)
    mean = shapes[0].copy()
    for _ in range(iters):
        aligned = np.stack([_fit(s, mean) for s in shapes])
        new = aligned.mean(0)
        new = new - new.mean(0)
        new = new / np.linalg.norm(new)
        new = _fit(new, mean)  # keep the reference frame's orientation
        new = new / np.linalg.norm(new)
        if np.abs(new - mean).max() < tol:
            return new
        mean = new
    return mean


def _fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    m = estimate_similarity(src, dst)
    return src @ m[:, :2].T + m[:, 2]


def normalise(mean: np.ndarray) -> np.ndarray:
    """Eye line horizontal, outer-corner distance IOD_FRACTION, bounding-box centre at CENTRE."""
    left, right = mean[36:42].mean(0), mean[42:48].mean(0)
    if right[0] < left[0]:  # image-left eye (36-41) must be on the left
        mean = mean * np.array([-1.0, 1.0])
        left, right = mean[36:42].mean(0), mean[42:48].mean(0)
    ang = np.arctan2(right[1] - left[1], right[0] - left[0])
    c, s = np.cos(-ang), np.sin(-ang)
    pts = mean @ np.array([[c, -s], [s, c]]).T
    if pts[8, 1] < pts[27, 1]:  # chin below the nose bridge (y grows downwards)
        pts = pts * np.array([1.0, -1.0])
    pts = pts * (IOD_FRACTION / np.linalg.norm(pts[45] - pts[36]))
    lo, hi = pts.min(0), pts.max(0)
    return pts + (np.array(CENTRE) - (lo + hi) / 2)


def speaker_clips(root: Path) -> dict[str, list[Path]]:
    grid = root / "grid"
    return {
        "grid_s1": sorted((grid / "s1").glob("*.mpg"))[:S1_CLIPS],
        "grid_s2": sorted((grid / "s2").glob("*.mpg")),
        "grid_s23": sorted((grid / "s23").glob("*.mpg")),
        "voxceleb_style_00015": [root / "voxceleb_style" / "00015.mp4"],
        "voxceleb_style_00098": [root / "voxceleb_style" / "00098.mp4"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=fixtures_dir())
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "talkface/data"
                    / "face_template_68.json")
    args = ap.parse_args()
    backend = DlibBackend()
    means, counts = [], {}
    for speaker, clips in speaker_clips(args.fixtures).items():
        if not clips or not all(c.exists() for c in clips):
            raise SystemExit(f"missing fixture clips for {speaker} under {args.fixtures}")
        shapes = []
        for clip in clips:
            track = backend.track(iter_frames(clip, fps=25))
            keep = np.flatnonzero(track.face_found)[::FRAME_STEP]
            shapes.append(track.points[keep].astype(np.float64))
        stacked = np.concatenate(shapes)
        counts[speaker] = {"clips": len(clips), "frames": len(stacked)}
        means.append(gpa(stacked))
        print(f"{speaker}: {len(stacked)} frames from {len(clips)} clips")
    template = normalise(gpa(np.stack(means)))
    lo, hi = template.min(0), template.max(0)
    if lo.min() < 0.05 or hi.max() > 0.95:
        raise SystemExit(f"template does not fit the crop with margin: bbox {lo} .. {hi}")
    points = np.round(template, 6).tolist()
    digest = hashlib.sha256(json.dumps(points).encode()).hexdigest()
    write_json(args.out, {
        "points": points,
        "sha256_points": digest,
        "units": "crop units: pixel = value * crop_size, x right, y down",
        "normalisation": {
            "eye_line": "horizontal (centres of points 36-41 and 42-47)",
            "outer_eye_corner_distance": IOD_FRACTION,
            "bbox_centre": list(CENTRE),
            "bbox": [lo.round(4).tolist(), hi.round(4).tolist()],
        },
        "method": "GPA (similarity) per speaker, then GPA of the speaker means (speakers weigh equally)",
        "speakers": counts,
        "frame_step": FRAME_STEP,
        "landmarks": backend.settings(),
        "script": "scripts/compute_face_template.py",
        "talkface_version": __version__,
        "date": dt.date.today().isoformat(),
    })
    print(f"wrote {args.out}: bbox {lo.round(3)} .. {hi.round(3)}")


if __name__ == "__main__":
    main()
