"""CPBD: cumulative probability of blur detection (Narvekar & Karam, IEEE TIP 20(9), 2011).

No-reference sharpness of an 8-bit grayscale image, written from the paper and vectorised:

1. Edge blocks: the image is cut into 64x64 blocks (a remainder at the right/bottom is ignored); a
   block is an edge block when more than 0.002 of its pixels are Canny edges (scikit-image's Canny,
   sigma 1, hysteresis thresholds 0.1 / 0.2 on the 0-255 scale, i.e. its defaults on a float image).
2. Edge pixels for width measurement: vertical edges from the horizontal Sobel derivative (kernel / 8),
   squared strength kept where it exceeds 2 sqrt(mean(strength^2)), thinned to pixels that are a strict
   local maximum horizontally or vertically (the Octave ``edge(..., 'sobel')`` convention).
3. Edge width (Marziliano et al. 2002) along the row: the gradient direction (``np.gradient``, angle
   quantised to 45 degrees) says whether intensity rises (0 deg) or falls (180 deg) left to right; from
   the edge pixel walk left and right while intensity keeps moving away monotonically (strictly),
   up to 101 pixels per side; width = left steps + right steps. Other directions are not measured.
4. Per edge block, contrast = max - min; just-noticeable-blur width w_JNB = 5 if contrast <= 50 else 3;
   P_BLUR = 1 - exp(-(w / w_JNB)^3.6).
5. CPBD = share of the measured edges in edge blocks whose P_BLUR, rounded to the paper's 0.01
   histogram bins, is <= 0.63. No edges (or an image under 64 px in either side) gives 0.

All edge pixels walk together (a loop over at most 101 steps, never over pixels), so the cost is a
few whole-image filters plus a few array operations per step. Agrees with the ``cpbd`` 1.0.7 package (tests).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.feature import canny

try:  # the Cython step of scikit-image's Canny; without it we call skimage.feature.canny itself
    from skimage.feature._canny_cy import _nonmaximum_suppression_bilinear
except ImportError:  # pragma: no cover - depends on the scikit-image build
    _nonmaximum_suppression_bilinear = None

from talkface.evaluate.metrics._image import GRAY_RULE, to_gray_u8
from talkface.evaluate.metrics.base import ClipSample, Metric, MetricResult, register_metric

BLOCK = 64
EDGE_BLOCK_SHARE = 0.002
BETA = 3.6
CONTRAST_SPLIT = 50  # contrast <= 50 -> w_JNB 5, else 3
MAX_WALK = 100  # the walk tries steps 0..100 per side, so a side is at most 101 px
SHARP_BIN = 63  # P_BLUR histogram bins of 0.01: bins 0..63 count as "blur not detected"


@functools.lru_cache(maxsize=8)
def _bleed_over(shape: tuple[int, int]) -> np.ndarray:
    return (
        ndi.gaussian_filter(np.ones(shape), 1.0, mode="constant", cval=0.0, truncate=4.0)
        + np.finfo(float).eps
    )


def canny_edges(img: np.ndarray) -> np.ndarray:
    """Exactly ``skimage.feature.canny(img)`` (sigma 1, thresholds 0.1/0.2) for a float64 image, faster.

    Same float operations in the same order (so the same edges bit for bit: Canny's suppression is
    sensitive to 1e-13 differences), minus the work that does not depend on the image: the border
    normalisation is cached per shape, and hysteresis uses OpenCV's connected components.
    """
    if _nonmaximum_suppression_bilinear is None:
        return canny(img)
    smoothed = ndi.gaussian_filter(img, 1.0, mode="constant", cval=0.0, truncate=4.0)
    smoothed /= _bleed_over(img.shape)
    jsobel = ndi.sobel(smoothed, axis=1)
    isobel = ndi.sobel(smoothed, axis=0)
    magnitude = isobel * isobel
    magnitude += jsobel * jsobel
    np.sqrt(magnitude, out=magnitude)
    inner = np.zeros(img.shape, dtype=bool)
    inner[1:-1, 1:-1] = True
    low_masked = _nonmaximum_suppression_bilinear(isobel, jsobel, magnitude, inner, 0.1)
    low = low_masked > 0
    n, labels = cv2.connectedComponents(low.astype(np.uint8), connectivity=8)
    good = np.zeros(n, dtype=bool)
    good[labels[low & (low_masked >= 0.2)]] = True
    good[0] = False
    return good[labels]


def sobel_vertical_edges(gray: np.ndarray) -> np.ndarray:
    """Thinned vertical edges (bool) from the horizontal Sobel derivative, Octave-style threshold."""
    img = np.asarray(gray, dtype=np.float64)
    deriv = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT) / 8.0
    strength = deriv * deriv
    strength[strength <= 2.0 * np.sqrt(strength.mean())] = 0.0
    pad = np.pad(strength, 1)
    horiz = (strength > pad[1:-1, :-2]) & (strength > pad[1:-1, 2:])
    vert = (strength > pad[:-2, 1:-1]) & (strength > pad[2:, 1:-1])
    return horiz | vert


def _walk(img: np.ndarray, rows: np.ndarray, start: np.ndarray, step: int, sign: np.ndarray) -> np.ndarray:
    """Steps taken from ``start`` along each row while ``sign * (next - current) > 0``, capped.

    All edges advance together; the loop is over walk steps (at most 101), never over pixels.
    """
    w = img.shape[1]
    taken = np.zeros(rows.size, dtype=np.int64)
    active = np.arange(rows.size)
    pos = start.copy()
    for _ in range(MAX_WALK + 1):
        nxt = pos[active] + step
        ok = (nxt >= 0) & (nxt < w)
        a = active[ok]
        cur_v = img[rows[a], pos[a]]
        nxt_v = img[rows[a], nxt[ok]]
        moving = sign[a] * (nxt_v - cur_v) > 0
        active = a[moving]
        if active.size == 0:
            break
        taken[active] += 1
        pos[active] += step
    return np.minimum(taken, MAX_WALK)


def measured_edges(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and Marziliano widths of the edge pixels whose width is measured."""
    img = np.asarray(gray, dtype=np.float64)
    h, w = img.shape
    empty = np.zeros(0, dtype=np.int64)
    if h < 3 or w < 3:
        return empty, empty, np.zeros(0)
    grad_y, grad_x = np.gradient(img)
    # The angle atan2(gy, gx) (taken as 0 where gx == 0) is non-zero somewhere, else nothing is measured.
    if not np.any((grad_x < 0) | ((grad_x > 0) & (grad_y != 0))):
        return empty, empty, np.zeros(0)
    edges = sobel_vertical_edges(img)
    edges[[0, -1], :] = False
    edges[:, [0, -1]] = False
    rows, cols = np.nonzero(edges)
    gx, gy = grad_x[rows, cols], grad_y[rows, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.where(gx != 0, np.arctan2(gy, gx) * (180 / np.pi), 0.0)
    quant = 45 * np.round(angle / 45)
    rising = quant == 0  # intensity increases left to right
    keep = rising | (np.abs(quant) == 180)
    rows, cols, rising = rows[keep], cols[keep], rising[keep]
    sign = np.where(rising, 1.0, -1.0)
    # Left walk starts at c-1 and moves left while intensity keeps falling (rising edge) or rising;
    # right walk starts at c+1 and moves right while it keeps rising (rising edge) or falling.
    left = _walk(img, rows, cols - 1, -1, -sign)
    right = _walk(img, rows, cols + 1, +1, sign)
    return rows, cols, (left + 1 + right + 1).astype(np.float64)


def edge_widths(gray: np.ndarray) -> np.ndarray:
    """Marziliano width at each measured edge pixel (float64 map, 0 where no width is measured)."""
    img = np.asarray(gray, dtype=np.float64)
    widths = np.zeros(img.shape)
    rows, cols, wid = measured_edges(img)
    widths[rows, cols] = wid
    return widths


def pblur_values(gray: np.ndarray) -> np.ndarray:
    """P_BLUR of every measured edge in an edge block (the population CPBD is computed over)."""
    img = np.asarray(gray, dtype=np.float64)
    h, w = img.shape
    nby, nbx = h // BLOCK, w // BLOCK
    if nby == 0 or nbx == 0:
        return np.zeros(0)
    hh, ww = nby * BLOCK, nbx * BLOCK
    rows, cols, wid = measured_edges(img)
    inside = (rows < hh) & (cols < ww)
    rows, cols, wid = rows[inside], cols[inside], wid[inside]
    if rows.size == 0:
        return np.zeros(0)
    canny_count = canny_edges(img)[:hh, :ww].reshape(nby, BLOCK, nbx, BLOCK).sum(axis=(1, 3))
    is_edge_block = canny_count > BLOCK * BLOCK * EDGE_BLOCK_SHARE
    blocks = img[:hh, :ww].reshape(nby, BLOCK, nbx, BLOCK)
    contrast = (blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))).astype(np.int64)
    w_jnb = np.where(contrast <= CONTRAST_SPLIT, 5.0, 3.0)
    by, bx = rows // BLOCK, cols // BLOCK
    sel = is_edge_block[by, bx]
    return 1.0 - np.exp(-(np.abs(wid[sel] / w_jnb[by[sel], bx[sel]]) ** BETA))


def pblur_histogram(gray: np.ndarray) -> np.ndarray:
    """Normalised histogram of P_BLUR in 101 bins of 0.01 (zeros when there are no edges)."""
    p = pblur_values(gray)
    hist = np.bincount(np.round(p * 100).astype(np.int64), minlength=101).astype(np.float64)
    return hist / p.size if p.size else hist


def cpbd(gray_image: np.ndarray) -> float:
    """CPBD sharpness in [0, 1] of a 2-D image on the 0-255 scale (an RGB image is converted first)."""
    gray = np.asarray(gray_image)
    if gray.ndim == 3:
        gray = to_gray_u8(gray)
    if gray.ndim != 2:
        raise ValueError(f"cpbd expects a 2-D grayscale image, got shape {gray.shape}")
    p = pblur_values(gray)
    if p.size == 0:
        return 0.0
    return float(np.count_nonzero(np.round(p * 100) <= SHARP_BIN) / p.size)


@register_metric
class CPBD(Metric):
    name: ClassVar[str] = "cpbd"
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset()
    doc: ClassVar[str] = (
        "No-reference sharpness: share of edges whose blur is not noticeable (mean over frames)."
    )
    reference: ClassVar[str] = "Narvekar & Karam, IEEE TIP 2011 (block 64, threshold 0.002, beta 3.6)"
    accepted_options: ClassVar[frozenset[str]] = frozenset({"frame_step"})
    variants: ClassVar[dict[str, dict[str, Any]]] = {"gray8-block64": {}}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.frame_step = int(self.options.get("frame_step", 1))
        if self.frame_step < 1:
            raise ValueError("frame_step must be >= 1")

    @property
    def variant(self) -> str:
        step = "" if self.frame_step == 1 else f"-every{self.frame_step}"
        return f"gray8-block64{step}"

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        d["grayscale"] = GRAY_RULE
        d["resolution"] = self.run_context.get("resolution", "generated frames as given")
        return d

    def score(self, sample: ClipSample) -> MetricResult:
        gray = to_gray_u8(sample.frames[:: self.frame_step])
        per_frame = np.array([cpbd(g) for g in gray])
        return MetricResult(value=float(per_frame.mean()), per_frame=per_frame)
