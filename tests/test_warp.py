"""The warps of the `warp` baselines, checked on images whose pixels say where they are: a pixel of the
output that came from identity pixel (x, y) has red = x and green = y, so where the warp read each
output pixel can be decoded and compared with the landmark it was meant to move."""

from __future__ import annotations

import numpy as np
import pytest

from talkface.generation.warp import WARPS, darken_mouth, lip_colour, make_warp, warp_frames

SIZE = 128


def _coordinate_image(size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([xx, yy, np.full_like(xx, 200)], axis=-1).astype(np.uint8)


def _face(size: int = SIZE) -> np.ndarray:
    """A plausible 68-point face in a 128 px crop: points spread over the face area, none on the border."""
    rng = np.random.default_rng(0)
    base = np.stack(np.meshgrid(np.linspace(30, 98, 17), np.linspace(30, 100, 4)), -1).reshape(-1, 2)
    return (base[:68] + rng.uniform(-1.5, 1.5, (68, 2))) * size / SIZE


@pytest.mark.parametrize("kind", WARPS)
def test_target_equal_to_identity_leaves_the_image(kind):
    image = _coordinate_image()
    points = _face()
    out = next(warp_frames(image, points, points[None], kind, mouth=False))
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1


@pytest.mark.parametrize("kind", WARPS)
def test_each_target_point_reads_its_identity_point(kind):
    image = _coordinate_image()
    src = _face()
    dst = src + np.array([3.0, -2.0])  # the face moved 3 px right, 2 px up; the border stays
    out = next(warp_frames(image, src, dst[None], kind, mouth=False)).astype(float)
    for (x, y), (sx, sy) in zip(dst, src, strict=True):
        xi, yi = int(round(x)), int(round(y))
        # the output pixel at the target point shows the identity pixel at the identity point (red = x,
        # green = y), within the rounding of the pixel grid and of 8-bit values
        assert abs(out[yi, xi, 0] - (sx + (xi - x))) <= 1.1
        assert abs(out[yi, xi, 1] - (sy + (yi - y))) <= 1.1
    map_x, map_y = make_warp(kind, src, SIZE).maps(dst)  # the border does not move
    assert abs(map_x[0, 0]) < 1e-3 and abs(map_y[SIZE - 1, SIZE - 1] - (SIZE - 1)) < 1e-3


def test_the_open_mouth_is_darkened_inside_the_inner_lips_only():
    frame = np.full((SIZE, SIZE, 3), 180, np.uint8)
    points = _face()
    points[60:68] = [[54, 60], [60, 56], [66, 56], [72, 60], [66, 70], [60, 70], [57, 66], [54, 62]]
    cavity = np.array([20.0, 10.0, 10.0])
    out = darken_mouth(frame, points, cavity)
    assert (np.abs(out[63, 63].astype(int) - cavity.astype(int)) <= 12).all()  # deep inside the mouth
    assert (out[10, 10] == 180).all() and (out[100, 30] == 180).all()  # far outside


def test_lip_colour_is_the_ring_between_outer_and_inner_lips():
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, :, 0] = 255
    points = _face()
    ring = np.array([[40, 50], [50, 45], [60, 44], [70, 44], [80, 45], [88, 50], [80, 62], [70, 66],
                     [60, 66], [50, 66], [44, 62], [40, 56]], float)
    points[48:60] = ring
    points[60:68] = [[50, 55], [60, 52], [70, 52], [80, 55], [70, 58], [60, 58], [55, 57], [50, 56]]
    assert np.allclose(lip_colour(image, points), [255, 0, 0])
