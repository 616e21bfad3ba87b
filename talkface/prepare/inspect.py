"""``talkface inspect``: a PNG to check a prepared clip by eye.

A user's mistake (not a dataset, an unknown or failed clip, a frame outside the clip, a source video no
longer where ``prepare`` read it, an ``--out`` that is a folder) is an :class:`InspectError` or the
dataset's :class:`~talkface.store.dataset.DatasetError`: one sentence, which the command prints as its
one ``error:`` line (exit 2).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np

from talkface.core import media
from talkface.store.dataset import Dataset
from talkface.utils.atomic import atomic_path


class InspectError(ValueError):
    """A clip that cannot be drawn as asked; ``str()`` is one sentence for the user."""


# Point groups of the 68-point (iBUG) scheme, drawn in different colours so a swapped group shows.
GROUPS = {
    "jaw": (range(0, 17), (255, 200, 0)),
    "brows": (range(17, 27), (255, 120, 0)),
    "nose": (range(27, 36), (0, 200, 255)),
    "eyes": (range(36, 48), (0, 255, 0)),
    "mouth": (range(48, 68), (255, 0, 120)),
}


def nth_frame(path: str | Path, index: int, fps: float | None = None) -> np.ndarray:
    """Decode frames up to ``index`` (streaming) and return that one."""
    frame = next(itertools.islice(media.iter_frames(path, fps), index, None), None)
    if frame is None:
        raise IndexError(f"{path} has no frame {index}")
    return frame


def draw_landmarks(image: np.ndarray, points: np.ndarray, radius: int = 2) -> np.ndarray:
    out = image.copy()
    if np.isnan(points).any():
        cv2.putText(out, "no face", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 0, 0), 2)
        return out
    for idx, colour in GROUPS.values():
        for x, y in points[list(idx)]:
            cv2.circle(out, (int(round(x)), int(round(y))), radius, colour, -1, lineType=cv2.LINE_AA)
    return out


def render_inspection(data: str | Path, clip_id: str, frame: int | None, out: str | Path) -> Path:
    """Draw frame ``frame`` (default: the middle one) of clip ``clip_id`` into the PNG ``out``.

    Raises :class:`InspectError` or :class:`~talkface.store.dataset.DatasetError` (one sentence each)
    for what a user can fix; see the module docstring.
    """
    out = Path(out)
    if out.is_dir():
        raise InspectError(f"--out {out} is a folder: give the PNG file to write, e.g. {out / 'inspect.png'}")
    ds = Dataset.open(data)
    rec = ds.record(clip_id)
    if rec.status == "failed":
        reason = str(rec.error or "no reason recorded").strip().splitlines()[0]
        raise InspectError(f"clip {clip_id} failed to prepare ({reason}), so it has no frames to draw: "
                           f"pick another clip (the manifest lists each clip's status)")
    arrays = ds.load_clip(clip_id)
    n = len(arrays["landmarks"])
    index = n // 2 if frame is None else frame
    if not 0 <= index < n:
        raise InspectError(f"--frame {index} is outside clip {clip_id}, whose frames are 0..{n - 1}")
    if not rec.source_video or not Path(rec.source_video).is_file():
        raise InspectError(f"the source video of clip {clip_id}, {rec.source_video}, is not there: inspect "
                           "draws the source frame beside the crop, so run it where the corpus folder "
                           "that `talkface prepare` read is")
    source = nth_frame(rec.source_video, index, ds.fps)
    crop = nth_frame(ds.crop_path(clip_id), index)
    left = draw_landmarks(source, arrays["landmarks"][index], radius=2)
    scale = source.shape[0] / crop.shape[0]
    crop_big = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    right = draw_landmarks(crop_big, arrays["landmarks_aligned"][index] * scale, radius=2)
    gap = np.full((source.shape[0], 8, 3), 255, np.uint8)
    body = np.concatenate([left, gap, right], axis=1)
    header = np.full((36, body.shape[1], 3), 255, np.uint8)
    text = f"{clip_id}  frame {index}/{n - 1}  status {rec.status}  crop {ds.crop_size}px"
    cv2.putText(header, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([header, body], axis=0)
    with atomic_path(out, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise InspectError(f"could not write {out}")
    return out
