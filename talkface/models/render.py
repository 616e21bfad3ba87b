"""Landmark images: the 68 aligned points drawn as a face sketch, the texture generator's pose input.

Why a sketch and not heat-maps: polylines give the generator the face's contours (lip opening, eye
lids) at a cost of microseconds per frame on the CPU, so landmark images are rendered on the fly in
DataLoader workers and at generation time instead of being stored.

Drawing (iBUG 68-point order): jaw 0-16 open; brows 17-21 and 22-26 open; nose bridge 27-30 open;
nose base 30-35 open; eyes 36-41 and 42-47 closed; outer lips 48-59 closed; inner lips 60-67 closed.
Lines are 8-connected, not antialiased (so a pixel is either a part's colour or black), drawn with
cv2.polylines at sub-pixel precision (4 fractional bits). Line width: 1 px per 128 px of crop size.

Channels: ``colour=True`` (the default) draws each part in its own RGB colour (PART_COLOURS) so the
generator can tell the lips from the jaw where they come close; ``colour=False`` draws every part
white in a single channel. A segment with a NaN end point is skipped; an all-NaN frame is black.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# (name, point indices, closed)
FACE_PARTS: tuple[tuple[str, tuple[int, ...], bool], ...] = (
    ("jaw", tuple(range(0, 17)), False),
    ("right_brow", tuple(range(17, 22)), False),
    ("left_brow", tuple(range(22, 27)), False),
    ("nose_bridge", tuple(range(27, 31)), False),
    ("nose_base", tuple(range(30, 36)), False),
    ("right_eye", tuple(range(36, 42)), True),
    ("left_eye", tuple(range(42, 48)), True),
    ("outer_lips", tuple(range(48, 60)), True),
    ("inner_lips", tuple(range(60, 68)), True),
)

# RGB, one per part: distinct at a glance and in every channel combination.
PART_COLOURS: dict[str, tuple[int, int, int]] = {
    "jaw": (255, 255, 255),
    "right_brow": (255, 128, 0),
    "left_brow": (255, 128, 0),
    "nose_bridge": (0, 255, 255),
    "nose_base": (0, 255, 255),
    "right_eye": (0, 255, 0),
    "left_eye": (0, 255, 0),
    "outer_lips": (255, 0, 0),
    "inner_lips": (255, 0, 255),
}

_SHIFT = 4  # fractional bits for sub-pixel line end points


@dataclass(frozen=True)
class RenderSettings:
    """How landmark images are drawn; stored in the texture config."""

    size: int = 128
    colour: bool = True
    thickness: int | None = None  # None: max(1, round(size / 128))

    @property
    def channels(self) -> int:
        return 3 if self.colour else 1

    @property
    def line_width(self) -> int:
        return self.thickness if self.thickness is not None else max(1, round(self.size / 128))


def part_segments(points: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Per part, the (K, 2, 2) segments to draw, dropping any segment with a NaN end point."""
    out = []
    for name, idx, closed in FACE_PARTS:
        seq = list(idx) + ([idx[0]] if closed else [])
        a = points[seq[:-1]]
        b = points[seq[1:]]
        seg = np.stack([a, b], axis=1)
        keep = np.isfinite(seg).all(axis=(1, 2))
        out.append((name, seg[keep]))
    return out


def render_landmarks(points: np.ndarray, settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """One (68, 2) landmark set in crop pixels -> (size, size, channels) uint8 sketch."""
    image = np.zeros((settings.size, settings.size, settings.channels), np.uint8)
    draw_into(image, points, settings)
    return image


def render_batch(points: np.ndarray, settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """(N, 68, 2) landmark sets -> (N, size, size, channels) uint8, one cv2 pass per frame."""
    points = np.asarray(points, dtype=np.float64)
    out = np.zeros((len(points), settings.size, settings.size, settings.channels), np.uint8)
    for i in range(len(points)):
        draw_into(out[i], points[i], settings)
    return out


def draw_into(image: np.ndarray, points: np.ndarray, settings: RenderSettings) -> None:
    scale = 1 << _SHIFT
    width = settings.line_width
    for name, seg in part_segments(np.asarray(points, dtype=np.float64)):
        if not len(seg):
            continue
        colour = PART_COLOURS[name] if settings.colour else (255,)
        fixed = np.round(seg * scale).astype(np.int32)
        cv2.polylines(image, list(fixed), False, colour, width, cv2.LINE_8, _SHIFT)


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1], the generator's input convention."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2)
    return x / 127.5 - 1.0
