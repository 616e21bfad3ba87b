"""Contact sheets of the eye region of GRID fixture clips, for annotating blinks by eye.

One PNG per clip: every frame's two eyes (one fixed box per eye and clip from the dlib landmarks
36-41 / 42-47 of frames 0, 37 and 74, with a margin), upscaled 3x with cubic interpolation and put side
by side, frame number written in the corner, 8 frames per row (10 rows for a 75-frame clip). The
annotation protocol that uses them is data_manifests/annotations/README.md.

Usage: python scripts/blink_contact_sheets.py --out sheets/ [--clips 24]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

SCALE = 3
COLUMNS = 8


def annotated_clips(grid: Path, n: int) -> list[Path]:
    """Every (125 // n)-th s1 clip in name order, the first n."""
    clips = sorted((grid / "s1").glob("*.mpg"))
    return clips[:: max(1, len(clips) // n)][:n]


def eye_boxes(frames: np.ndarray, backend) -> list[tuple[int, int, int, int]]:
    """One fixed (x0, y0, x1, y1) per eye (points 36-41, 42-47) over frames 0, middle and last: the
    eye's extent plus 30% of its width left and right, and a box as tall as 0.8 of its width."""
    pts = []
    for t in (0, len(frames) // 2, len(frames) - 1):
        lm = backend.detect(frames[t])
        if lm is not None and np.isfinite(lm).all():
            pts.append(lm)
    if not pts:
        raise RuntimeError("no face found")
    p = np.stack(pts)
    h, w = frames.shape[1:3]
    boxes = []
    for eye in (slice(36, 42), slice(42, 48)):
        e = p[:, eye].reshape(-1, 2)
        x0, y0 = e.min(0)
        x1, y1 = e.max(0)
        ew = x1 - x0
        cy = (y0 + y1) / 2
        boxes.append((int(max(0, x0 - 0.3 * ew)), int(max(0, cy - 0.4 * ew)),
                      int(min(w, x1 + 0.3 * ew)), int(min(h, cy + 0.4 * ew))))
    return boxes


def contact_sheet(frames: np.ndarray, boxes: list[tuple[int, int, int, int]], title: str) -> np.ndarray:
    height = max(b[3] - b[1] for b in boxes)
    tiles = []
    for t, f in enumerate(frames):
        eyes = []
        for x0, y0, x1, _ in boxes:
            crop = f[y0 : y0 + height, x0:x1]
            eyes.append(cv2.resize(crop, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC))
        gap = np.full((eyes[0].shape[0], 6, 3), 90, np.uint8)
        tile = cv2.cvtColor(np.hstack([eyes[0], gap, eyes[1]]), cv2.COLOR_RGB2BGR)
        cv2.rectangle(tile, (0, 0), (30, 16), (0, 0, 0), -1)
        cv2.putText(tile, str(t), (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(40, 40, 40)))
    rows = -(-len(tiles) // COLUMNS)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * COLUMNS - len(tiles))
    grid = np.vstack([np.hstack(tiles[r * COLUMNS : (r + 1) * COLUMNS]) for r in range(rows)])
    head = np.zeros((24, grid.shape[1], 3), np.uint8)
    cv2.putText(head, title, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([head, grid])


def main() -> None:
    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video
    from talkface.utils.fixtures import fixtures_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=24)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    backend = get_landmark_backend("dlib")
    for clip in annotated_clips(fixtures_dir() / "grid", args.clips):
        frames = read_video(clip)
        boxes = eye_boxes(frames, backend)
        sheet = contact_sheet(frames, boxes, f"s1/{clip.name}  (right eye of the image left)")
        cv2.imwrite(str(args.out / f"{clip.stem}.png"), sheet)
        print(args.out / f"{clip.stem}.png", sheet.shape)


if __name__ == "__main__":
    main()
