"""CPBD: cumulative probability of blur detection (Narvekar & Karam, IEEE TIP 20(9), 2011).

No-reference sharpness of an 8-bit grayscale image. Three named implementations, because the reference
code and its popular Python port give different numbers (LIVE img1: MATLAB 0.1353, port 0.1091):

``matlab`` (default)
    The authors' MATLAB ``CPBD_compute`` as it runs on the current Image Processing Toolbox: MATLAB
    ``rgb2gray``; edge blocks from ``edge(I, 'canny')``; edge pixels for width measurement from
    ``edge(I, 'Sobel', 2, 'vertical')`` (threshold 2, absolute, on the 0-255 scale); both edge
    detectors in :mod:`talkface.evaluate.metrics.matlab_edge`, equal to MATLAB's maps pixel for pixel
    on LIVE img1. Rounding as MATLAB's ``round`` (halves away from zero).
``matlab-legacy-canny``
    The same with the toolbox's earlier Canny (Gaussian then derivative of a 2-D Gaussian): on img1 it
    gives exactly the MATLAB value published with the LIVE comparison (0.1352566; ``matlab`` gives
    0.1349, one 64x64 block decides differently).
``python-cpbd``
    Bit-identical to the ``cpbd`` 1.0.7 package (a port that approximates MATLAB's edge detection with
    scikit-image's Canny and Octave's Sobel rule): talkface's grayscale rule; scikit-image Canny (sigma
    1, thresholds 0.1/0.2 on 0-255); edges from the horizontal Sobel derivative, squared strength kept
    above 2 sqrt(mean(strength^2)), thinned to strict horizontal or vertical local maxima; numpy's
    rounding. Use it only to compare with numbers computed by that package.

Shared by all three (the paper's method):

1. Edge blocks: 64x64 blocks (a remainder at the right/bottom is ignored) with more than 0.002 of their
   pixels on Canny edges.
2. Edge width (Marziliano et al. 2002) at each width-measurement edge pixel off the image border, along
   the row: the gradient direction (central differences, angle quantised to 45 degrees) says whether
   intensity rises (0 deg) or falls (180 deg) left to right; from the edge pixel walk left and right
   while intensity keeps moving away strictly, up to 101 pixels per side; width = left + right steps.
   Other directions are not measured.
3. Per edge block, contrast = max - min; w_JNB = 5 if contrast <= 50 else 3;
   P_BLUR = 1 - exp(-(w / w_JNB)^3.6).
4. CPBD = share of the measured edges in edge blocks whose P_BLUR, rounded to the paper's 0.01 bins,
   is <= 0.63. No edges (or an image under 64 px in either side) gives 0.

How it is computed (every step equal to the plain rule above; the tests compare each with it):

- Widths: the walks read byte maps of "the run stops here" 8 steps at a time, all edge pixels
  together (a handful of reads, never a loop over pixels); for uint8 images the Sobel map is integer
  and the 0/180-degree test is two integer comparisons (equal to MATLAB's rounded angle for every
  possible gradient).
- Edge blocks (``matlab`` variants): only whether a block holds more than 8 Canny edges matters, so
  :func:`~talkface.evaluate.metrics.matlab_edge.canny_edge_blocks` settles most blocks from a sample
  of the strong pixels (which are edges whatever the hysteresis does) and runs the full map only
  where the hysteresis can decide a block.
- P_BLUR takes one of 2 x 203 values (integer widths 2..202, w_JNB 3 or 5): looked up in a table.

The cost on a 256x256 face crop is then mostly MATLAB's Canny gradients (four 16-tap float64 filter
passes, kept in float64 because the suppression decides on 1e-13 differences).
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

from talkface.evaluate.metrics import matlab_edge
from talkface.evaluate.metrics._image import GRAY_RULE, to_gray_u8
from talkface.evaluate.metrics.base import ClipSample, Metric, MetricResult, register_metric

BLOCK = 64
EDGE_BLOCK_SHARE = 0.002
BETA = 3.6
CONTRAST_SPLIT = 50  # contrast <= 50 -> w_JNB 5, else 3
MAX_WALK = 100  # the walk tries steps 0..100 per side, so a side is at most 101 px
SHARP_BIN = 63  # P_BLUR histogram bins of 0.01: bins 0..63 count as "blur not detected"
MATLAB_SOBEL_THRESHOLD = 2.0  # CPBD_compute.m: edge(input_image, 'Sobel', [2], 'vertical')


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


_WORD = 8  # the walks read the stop maps 8 steps (bytes) at a time
_PAD = 112  # stop bytes after the maps, so that no read leaves the buffer (> MAX_WALK + _WORD)


def _first_stop(g: np.ndarray) -> np.ndarray:
    """Offset (0-7) of the first non-zero byte of each non-zero big-endian word of 0/1 bytes: that
    byte is the word's leading one, 2^(8 (7 - j)), and the lower bytes add under 1% to it, so the
    float64 exponent (1023 + 56 - 8 j) gives j exactly."""
    exponent = g.astype(np.float64).view(np.int64) >> 52
    return (1079 - exponent) >> 3


def _run_lengths(buf: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Steps from each ``start`` byte of ``buf`` before the first non-zero (stop) byte, at most
    ``MAX_WALK``: 8 bytes per read, all walks together, and only the unfinished ones read again."""
    words = np.ndarray((buf.size - _WORD + 1,), dtype=">u8", buffer=buf, strides=(1,))  # bytes q..q+7
    g = words[start]
    steps = _first_stop(g)
    todo = np.flatnonzero(g == 0)
    off = _WORD
    while todo.size and off < MAX_WALK:
        g = words[start[todo] + off]
        hit = g != 0
        steps[todo[hit]] = off + _first_stop(g[hit])
        todo = todo[~hit]
        off += _WORD
    steps[todo] = MAX_WALK
    return np.minimum(steps, MAX_WALK, out=steps)


def _side_widths(img: np.ndarray, idx: np.ndarray, rising: np.ndarray) -> np.ndarray:
    """Marziliano width at each edge pixel (flat indices ``idx``, none in the first or last column
    nor in the first row): 1 + steps left (from c-1) + 1 + steps right (from c+1), each walk at most
    ``MAX_WALK`` steps and strictly monotone; a rising edge walks down to the left and up to the
    right, a falling edge the reverse.

    The walks read byte maps of "the run stops here": ``stop[q]`` is 1 unless intensity moves the
    right way from q to q+1 (1 in the last column, so no walk leaves its row), the rising and the
    falling map laid end to end, then the same bytes reversed for the leftward walks. A walk's length
    is the distance to the nearest stop byte ahead, found 8 bytes per read for all walks at once.
    """
    h, w = img.shape
    n = h * w
    size = 2 * n + _PAD
    buf = np.ones(2 * size, dtype=np.uint8)
    maps = buf[: 2 * n].reshape(2, h, w)
    np.less_equal(img[:, 1:], img[:, :-1], out=maps[0, :, :-1].view(bool))
    np.greater_equal(img[:, 1:], img[:, :-1], out=maps[1, :, :-1].view(bool))
    buf[size:] = buf[size - 1 :: -1]  # position q of the maps is byte 2 size - 1 - q here
    flat = idx + np.where(rising, 0, n)  # the edge pixel in the rising or the falling map
    # rightward: stops at flat+1, flat+2, ...; leftward: stops at flat-2, flat-3, ... (row 0 ends in one)
    steps = _run_lengths(buf, np.concatenate([flat + 1, (2 * size - 1) - (flat - 2)]))
    return steps[: idx.size] + steps[idx.size :] + 2


VARIANTS = ("matlab", "matlab-legacy-canny", "python-cpbd")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"CPBD variant must be one of {VARIANTS}, not {variant!r}")


def _measure(img: np.ndarray, idx: np.ndarray, grad_at, rnd) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and Marziliano widths (int) of the interior edge pixels (flat indices ``idx``)
    whose quantised gradient angle is 0 or 180 degrees; ``grad_at(idx)`` gives (gx, gy) there."""
    h, w = img.shape
    r, c = np.divmod(idx, w)
    idx = idx[(r > 0) & (r < h - 1) & (c > 0) & (c < w - 1)]
    gx, gy = grad_at(idx)
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.where(gx != 0, np.arctan2(gy, gx) * (180 / np.pi), 0.0)
    quant = 45 * rnd(angle / 45)
    rising = quant == 0  # intensity increases left to right
    keep = rising | (np.abs(quant) == 180)
    idx, rising = idx[keep], rising[keep]
    return idx, _side_widths(img, idx, rising)


_TAN_22_5 = float(np.tan(np.pi / 8))


def _measure_matlab_u8(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_measure` of the ``matlab`` variants for a uint8 image, in integer arithmetic.

    With 2 gx and 2 gy integers in [-510, 510], MATLAB's quantised angle is 0 exactly when gx == 0 (the
    angle is set to 0 there) or gx > 0 and |gy| < tan(22.5 deg) gx, and +-180 exactly when gx < 0
    and |gy| <= tan(22.5 deg) |gx|: no such ratio comes within 2e-6 of tan(22.5 deg), so these
    comparisons and the float angle, rounded, agree for every possible pair (checked exhaustively).
    """
    h, w = img.shape
    idx = matlab_edge.sobel_edge_indices(img, MATLAB_SOBEL_THRESHOLD, interior=True)
    flat = img.ravel()
    gx = flat[idx + 1].astype(np.int16) - flat[idx - 1]  # 2 gx
    agy = np.abs(flat[idx + w].astype(np.int16) - flat[idx - w])  # 2 |gy|
    band = _TAN_22_5 * np.abs(gx)
    rising = (gx > 0) & (agy < band)
    rising |= gx == 0
    keep = (gx < 0) & (agy <= band)
    keep |= rising
    idx, rising = idx[keep], rising[keep]
    return idx, _side_widths(img, idx, rising)


def _exact_u8(gray: np.ndarray) -> np.ndarray:
    """The image as uint8 when that is exact (the fast integer paths), else as given."""
    arr = np.asarray(gray)
    if arr.dtype == np.uint8:
        return arr
    if arr.min() >= 0 and arr.max() <= 255 and np.array_equal(arr, np.round(arr)):
        return arr.astype(np.uint8)
    return arr


def _measured_edges(gray: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and integer widths of :func:`measured_edges` (``gray`` through :func:`_exact_u8`)."""
    h, w = gray.shape
    empty = np.zeros(0, dtype=np.intp)
    if h < 3 or w < 3:
        return empty, empty
    if variant != "python-cpbd" and gray.dtype == np.uint8:
        return _measure_matlab_u8(gray)
    img = np.asarray(gray, dtype=np.float64)
    if variant == "python-cpbd":
        grad_y, grad_x = np.gradient(img)
        # The port measures nothing when atan2(gy, gx) (0 where gx == 0) is zero everywhere.
        if not np.any((grad_x < 0) | ((grad_x > 0) & (grad_y != 0))):
            return empty, empty
        gxf, gyf = grad_x.ravel(), grad_y.ravel()
        return _measure(img, np.flatnonzero(sobel_vertical_edges(img)), lambda i: (gxf[i], gyf[i]), np.round)
    # MATLAB: gradient() central differences at interior pixels (the only ones measured).
    flat = img.ravel()

    def central(i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (flat[i + 1] - flat[i - 1]) / 2, (flat[i + w] - flat[i - w]) / 2

    idx = matlab_edge.sobel_edge_indices(img, MATLAB_SOBEL_THRESHOLD)
    return _measure(img, idx, central, matlab_edge.matlab_round)


def measured_edges(gray: np.ndarray, variant: str = "matlab") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and Marziliano widths (float64) of the edge pixels whose width is measured."""
    _check_variant(variant)
    gray = _exact_u8(np.asarray(gray))
    idx, wid = _measured_edges(gray, variant)
    rows, cols = np.divmod(idx, gray.shape[1])
    return rows, cols, wid.astype(np.float64)


def edge_widths(gray: np.ndarray, variant: str = "matlab") -> np.ndarray:
    """Marziliano width at each measured edge pixel (float64 map, 0 where no width is measured)."""
    widths = np.zeros(np.shape(gray))
    rows, cols, wid = measured_edges(gray, variant)
    widths[rows, cols] = wid
    return widths


def block_edges(gray: np.ndarray, variant: str = "matlab") -> np.ndarray:
    """The Canny map that decides the edge blocks (bool, full image)."""
    _check_variant(variant)
    img = np.asarray(gray, dtype=np.float64)
    if variant == "python-cpbd":
        return canny_edges(img)
    return matlab_edge.canny_edges(img, legacy=variant == "matlab-legacy-canny")


def _edge_blocks(img: np.ndarray, variant: str, needed: np.ndarray) -> np.ndarray:
    """Bool (rows // BLOCK, cols // BLOCK): blocks with more than EDGE_BLOCK_SHARE of their pixels on
    the variant's Canny edges (decided at least where ``needed``)."""
    if variant != "python-cpbd":
        legacy = variant == "matlab-legacy-canny"
        return matlab_edge.canny_edge_blocks(img, BLOCK, EDGE_BLOCK_SHARE, needed, legacy=legacy)
    h, w = img.shape
    nby, nbx = h // BLOCK, w // BLOCK
    er, ec = np.divmod(np.flatnonzero(canny_edges(np.asarray(img, dtype=np.float64))), w)
    inner = (er < nby * BLOCK) & (ec < nbx * BLOCK)
    canny_count = np.bincount((er[inner] // BLOCK) * nbx + ec[inner] // BLOCK, minlength=nby * nbx)
    return (canny_count > BLOCK * BLOCK * EDGE_BLOCK_SHARE).reshape(nby, nbx)


@functools.lru_cache(maxsize=1)
def _pblur_table() -> np.ndarray:
    """P_BLUR = 1 - exp(-(w / w_JNB)^BETA) for every possible width w (0 .. 2 MAX_WALK + 2): row 0
    for w_JNB 5, row 1 for w_JNB 3 (the same float operations as on the edges themselves)."""
    wid = np.arange(2 * MAX_WALK + 3, dtype=np.float64)
    w_jnb = np.array([[5.0], [3.0]])
    table = 1.0 - np.exp(-(np.abs(wid / w_jnb) ** BETA))
    table.flags.writeable = False
    return table


def _population(gray: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """Widths (int) and w_JNB rows (0: w_JNB 5, 1: w_JNB 3) of the measured edges in edge blocks."""
    gray = _exact_u8(np.asarray(gray))
    h, w = gray.shape
    nby, nbx = h // BLOCK, w // BLOCK
    empty = np.zeros(0, dtype=np.intp)
    if nby == 0 or nbx == 0:
        return empty, empty
    idx, wid = _measured_edges(gray, variant)
    block = matlab_edge.block_map(h, w, BLOCK)[idx]  # block number + 1; 0 outside the blocks
    if h > nby * BLOCK or w > nbx * BLOCK:
        inside = block > 0
        block, wid = block[inside], wid[inside]
    if block.size == 0:
        return empty, empty
    needed = np.zeros(nby * nbx + 1, dtype=bool)
    needed[block] = True
    is_edge_block = _edge_blocks(gray, variant, needed[1:].reshape(nby, nbx)).ravel()
    sel = np.concatenate([[False], is_edge_block])[block]
    # int(max - min) per block, as both references index w_JNB with it (rows reduced first: faster)
    rows = gray[: nby * BLOCK, : nbx * BLOCK].reshape(nby, BLOCK, nbx * BLOCK)
    hi = np.maximum.reduce(rows, axis=1).reshape(nby, nbx, BLOCK).max(axis=2)
    lo = np.minimum.reduce(rows, axis=1).reshape(nby, nbx, BLOCK).min(axis=2)
    contrast = (hi.astype(np.float64) - lo).astype(np.int64)
    three = np.concatenate([[0], (contrast.ravel() > CONTRAST_SPLIT).view(np.uint8)])  # w_JNB 3
    return wid[sel], three[block[sel]]


def pblur_values(gray: np.ndarray, variant: str = "matlab") -> np.ndarray:
    """P_BLUR of every measured edge in an edge block (the population CPBD is computed over)."""
    _check_variant(variant)
    wid, jnb = _population(gray, variant)
    return _pblur_table()[jnb, wid]


@functools.lru_cache(maxsize=len(VARIANTS))
def _bin_table(variant: str) -> np.ndarray:
    """The 0.01 bin of every entry of :func:`_pblur_table`, with the variant's rounding."""
    table = pblur_bins(_pblur_table(), variant)
    table.flags.writeable = False
    return table


def pblur_bins(p: np.ndarray, variant: str = "matlab") -> np.ndarray:
    """The 0.01 histogram bin of each P_BLUR (numpy's rounding for the port, MATLAB's otherwise)."""
    rnd = np.round if variant == "python-cpbd" else matlab_edge.matlab_round
    return rnd(p * 100).astype(np.int64)


def pblur_histogram(gray: np.ndarray, variant: str = "matlab") -> np.ndarray:
    """Normalised histogram of P_BLUR in 101 bins of 0.01 (zeros when there are no edges)."""
    p = pblur_values(gray, variant)
    hist = np.bincount(pblur_bins(p, variant), minlength=101).astype(np.float64)
    return hist / p.size if p.size else hist


def to_gray(image: np.ndarray, variant: str = "matlab") -> np.ndarray:
    """The variant's grayscale: MATLAB ``rgb2gray`` for the MATLAB variants, talkface's rule for the port."""
    return to_gray_u8(image) if variant == "python-cpbd" else matlab_edge.rgb2gray(image)


def cpbd(image: np.ndarray, variant: str = "matlab") -> float:
    """CPBD sharpness in [0, 1] of a 2-D image on the 0-255 scale (an RGB image is converted first)."""
    _check_variant(variant)
    gray = np.asarray(image)
    if gray.ndim == 3:
        gray = to_gray(gray, variant)
    if gray.ndim != 2:
        raise ValueError(f"cpbd expects a 2-D grayscale image, got shape {gray.shape}")
    wid, jnb = _population(gray, variant)
    if wid.size == 0:
        return 0.0
    bins = _bin_table(variant)[jnb, wid]
    if variant == "python-cpbd":  # the package's arithmetic: normalised histogram, then its sum
        hist = np.bincount(bins, minlength=101).astype(np.float64) / wid.size
        return float(np.sum(hist[: SHARP_BIN + 1]))
    return float(np.count_nonzero(bins <= SHARP_BIN) / wid.size)


_VARIANT_DOCS = {
    "matlab": "the authors' MATLAB CPBD_compute on the current Image Processing Toolbox (rgb2gray, "
    "edge canny, edge Sobel threshold 2 vertical; MATLAB rounding)",
    "matlab-legacy-canny": "as 'matlab' with the toolbox's earlier Canny (reproduces the published LIVE "
    "MATLAB value of img1 exactly)",
    "python-cpbd": "bit-identical to the cpbd 1.0.7 package (scikit-image Canny, Octave-style Sobel, "
    "numpy rounding, talkface grayscale)",
}


@register_metric
class CPBD(Metric):
    name: ClassVar[str] = "cpbd"
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset()
    doc: ClassVar[str] = (
        "No-reference sharpness: share of edges whose blur is not noticeable (mean over frames)."
    )
    reference: ClassVar[str] = (
        "Narvekar & Karam, IEEE TIP 2011; reproduces the authors' MATLAB CPBD_compute (block 64, "
        "threshold 0.002, beta 3.6)"
    )
    accepted_options: ClassVar[frozenset[str]] = frozenset({"implementation", "frame_step"})
    variants: ClassVar[dict[str, dict[str, Any]]] = {v: {"implementation": v} for v in VARIANTS}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.implementation = self.variant_option("implementation")
        self.frame_step = int(self.options.get("frame_step", 1))
        if self.frame_step < 1:
            raise ValueError("frame_step must be >= 1")

    @property
    def variant(self) -> str:
        step = "" if self.frame_step == 1 else f"-every{self.frame_step}"
        return f"{self.implementation}{step}"

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        d["implementation"] = _VARIANT_DOCS[self.implementation]
        d["grayscale"] = (
            GRAY_RULE
            if self.implementation == "python-cpbd"
            else "MATLAB rgb2gray: 0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B, "
            "rounded to uint8"
        )
        d["frame_step"] = self.frame_step
        d["resolution"] = self.run_context.get("resolution", "generated frames as given")
        return d

    def score(self, sample: ClipSample) -> MetricResult:
        frames = sample.frames[:: self.frame_step]
        per_frame = np.array([cpbd(to_gray(f, self.implementation), self.implementation) for f in frames])
        return MetricResult(value=float(per_frame.mean()), per_frame=per_frame)
