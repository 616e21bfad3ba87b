"""Warping the identity image to target landmarks: the training-free way to animate any face.

Two warps, both backward maps (each output pixel looks up where it comes from in the identity image)
with the 68 points plus 8 fixed points on the crop border, so the background and the frame edges stay:

- ``piecewise-affine``: a Delaunay triangulation of the identity's points, kept fixed for every frame
  (so no triangle flips when the mouth opens); each output pixel takes the affine map of the target
  triangle it falls in.
- ``thin-plate``: a thin-plate spline (Bookstein 1989, kernel r^2 log r^2) from target to identity
  points: smooth everywhere, no triangle seams.

The mouth interior: a warp can only stretch the lips of a closed identity mouth over the opening. So
inside the target inner-lip polygon (points 60-67) the frame is darkened towards a mouth-cavity colour
(:data:`CAVITY_SHADE` x the mean colour of the identity's lips), feathered over one pixel per 64 of
crop size; what a real mouth shows there (teeth, tongue) is left to a trained texture stage.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from talkface.core.face68 import INNER_LIPS, OUTER_LIPS

WARPS = ("piecewise-affine", "thin-plate")
#: The cavity colour relative to the identity's mean lip colour.
CAVITY_SHADE = 0.35
MOUTH_RULE = (f"inside the target inner-lip polygon (points 60-67) the frame is blended towards "
              f"{CAVITY_SHADE} x the identity's mean lip colour, feathered")


def border_points(size: int) -> np.ndarray:
    """(8, 2) fixed points on the crop's border: corners and edge midpoints."""
    s = float(size - 1)
    h = s / 2
    return np.array([[0, 0], [h, 0], [s, 0], [s, h], [s, s], [h, s], [0, s], [0, h]], np.float64)


def with_border(points: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([np.asarray(points, np.float64), border_points(size)])


class PiecewiseAffine:
    """Warps of one identity image with a mesh fixed by its points (the Delaunay triangles of the
    identity's points and the border)."""

    def __init__(self, identity_points: np.ndarray, size: int):
        self.size = int(size)
        self.src = with_border(identity_points, size)
        self.triangles = Delaunay(self.src).simplices  # (K, 3) point indices
        yy, xx = np.mgrid[0:size, 0:size]
        self.grid = np.stack([xx.ravel(), yy.ravel(), np.ones(size * size)], axis=1)  # (P, 3) x, y, 1

    def maps(self, target_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y) for ``cv2.remap``: where each output pixel reads the identity image."""
        dst = with_border(target_points, self.size)
        label = np.full((self.size, self.size), -1, np.int32)
        affines = np.zeros((len(self.triangles), 2, 3), np.float64)
        for k, tri in enumerate(self.triangles):
            d, s = dst[tri].astype(np.float32), self.src[tri].astype(np.float32)
            area = (d[1, 0] - d[0, 0]) * (d[2, 1] - d[0, 1]) - (d[2, 0] - d[0, 0]) * (d[1, 1] - d[0, 1])
            if abs(area) < 1e-6:  # a collapsed target triangle covers no pixel
                continue
            affines[k] = cv2.getAffineTransform(d, s)
            cv2.fillConvexPoly(label, np.round(d).astype(np.int32), int(k))
        covered = label.ravel() >= 0
        src = np.empty((self.size * self.size, 2), np.float64)
        src[covered] = np.einsum("pij,pj->pi", affines[label.ravel()[covered]], self.grid[covered])
        src[~covered] = self.grid[~covered, :2]  # outside every triangle (rounding at edges): stay
        return (src[:, 0].reshape(self.size, self.size).astype(np.float32),
                src[:, 1].reshape(self.size, self.size).astype(np.float32))


class ThinPlate:
    """Warps of one identity image by a thin-plate spline from target to identity points."""

    def __init__(self, identity_points: np.ndarray, size: int, regularisation: float = 0.0):
        self.size = int(size)
        self.src = with_border(identity_points, size)
        self.regularisation = float(regularisation)
        yy, xx = np.mgrid[0:size, 0:size]
        self.grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)

    @staticmethod
    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r2 > 0, r2 * np.log(r2), 0.0)

    def maps(self, target_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dst = with_border(target_points, self.size)
        n = len(dst)
        system = np.zeros((n + 3, n + 3))
        system[:n, :n] = self.kernel(dst, dst) + self.regularisation * np.eye(n)
        system[:n, n] = 1.0
        system[:n, n + 1:] = dst
        system[n, :n] = 1.0
        system[n + 1:, :n] = dst.T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = self.src
        coef = np.linalg.lstsq(system, rhs, rcond=None)[0]
        src = self.kernel(self.grid, dst) @ coef[:n] + coef[n] + self.grid @ coef[n + 1:]
        return (src[:, 0].reshape(self.size, self.size).astype(np.float32),
                src[:, 1].reshape(self.size, self.size).astype(np.float32))


def make_warp(kind: str, identity_points: np.ndarray, size: int) -> PiecewiseAffine | ThinPlate:
    if kind == "piecewise-affine":
        return PiecewiseAffine(identity_points, size)
    if kind == "thin-plate":
        return ThinPlate(identity_points, size)
    raise ValueError(f"unknown warp {kind!r}; choose one of {', '.join(WARPS)}")


def lip_colour(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The mean colour inside the outer-lip polygon less the inner-lip polygon (the lips themselves)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points[OUTER_LIPS]).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(points[INNER_LIPS]).astype(np.int32)], 0)
    if not mask.any():
        return image.reshape(-1, 3).mean(axis=0)
    return image[mask.astype(bool)].mean(axis=0)


def darken_mouth(frame: np.ndarray, target_points: np.ndarray, cavity: np.ndarray) -> np.ndarray:
    """:data:`MOUTH_RULE` on one frame."""
    size = frame.shape[0]
    mask = np.zeros(frame.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(target_points[INNER_LIPS]).astype(np.int32)], 1.0)
    if not mask.any():
        return frame
    sigma = max(0.5, size / 64.0)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None]
    out = frame.astype(np.float32) * (1 - mask) + cavity.astype(np.float32)[None, None] * mask
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def warp_frames(identity: np.ndarray, identity_points: np.ndarray, targets: np.ndarray,
                kind: str = "piecewise-affine", mouth: bool = True):
    """Yield the identity image (S, S, 3) uint8 warped to each (68, 2) target in ``targets`` (pixels of
    the same S); a target with missing points yields the identity image unchanged."""
    size = identity.shape[0]
    warp = make_warp(kind, identity_points, size)
    cavity = CAVITY_SHADE * lip_colour(identity, np.asarray(identity_points, np.float64))
    for target in targets:
        target = np.asarray(target, np.float64)
        if not np.isfinite(target).all():
            yield identity
            continue
        map_x, map_y = warp.maps(target)
        frame = cv2.remap(identity, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        yield darken_mouth(frame, target, cavity) if mouth else frame
