"""MATLAB Image Processing Toolbox semantics that CPBD's reference code depends on, written for numpy.

The authors' CPBD (Narvekar & Karam's ``CPBD_compute.m``) calls three toolbox functions whose exact
behaviour decides its value: ``rgb2gray``, ``edge(I, 'canny')`` (which 64x64 blocks are edge blocks) and
``edge(I, 'Sobel', 2, 'vertical')`` (which pixels get an edge width). Their documented behaviour, with
the details the documentation leaves open settled against MATLAB's own output on LIVE ``img1``
(``../shared/fixtures/reference/cpbd``: both edge maps equal MATLAB's pixel for pixel, 0 of 393,216
differ; ``tests/test_metrics_cpbd.py``):

``rgb2gray``
    0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B (the documented coefficients),
    rounded half away from zero to uint8.

``edge(I, 'sobel', thresh, 'vertical')`` (:func:`sobel_edges`)
    ``bx``/``by`` = correlation with the Sobel kernels divided by 8 (``fspecial('sobel')/8`` and its
    transpose), borders replicated. Strength ``b = bx^2`` (vertical edges only); a pixel is an edge when
    ``b > thresh^2`` and it is a local maximum of ``b`` along its column
    (``b(r-1,c) <= b(r,c) > b(r+1,c)``) or, where ``|bx| >= |by|``, along its row
    (``b(r,c-1) <= b(r,c) > b(r,c+1)``); neighbours outside the image count as 0, so border pixels
    can be edges. (This thinning rule is what MATLAB's output shows; the documentation only says that
    edges are thinned.) ``thresh`` is absolute: CPBD passes 2 for a 0-255 double image.

``edge(I, 'canny')`` (:func:`canny_edges`), the toolbox's current implementation
    sigma sqrt(2); a 1-D Gaussian of ``8 ceil(sigma)`` = 16 taps at ``-7.5 .. 7.5`` (normalised to sum
    1) and its derivative (``gradient`` of it, positive and negative parts each normalised to sum 1),
    applied as convolutions with replicated borders (the even kernel's centre is tap 8 of 16):
    ``dx`` = vertical Gaussian then horizontal derivative, ``dy`` = horizontal Gaussian then vertical
    derivative. Magnitude ``sqrt(dx^2 + dy^2)`` (MATLAB: ``hypot``, at most 1 ulp apart; the maps are
    equal on img1 and this is 4x faster here) divided by its maximum. High threshold: the first of 64
    histogram bins (bin k holds values that round to k/63) at which the cumulative count exceeds 70% of
    the pixels, divided by 64; low threshold 0.4 x high. Non-maximum suppression in four direction
    sectors with linear interpolation between the two neighbours the gradient points between (a pixel
    is kept when its magnitude is >= both interpolated values; border pixels are never edges),
    then hysteresis: weak pixels (> low) in 8-connected groups holding a strong pixel (> high).

``legacy=True`` (:func:`canny_edges`), the toolbox's earlier Canny
    Gaussian ``exp(-t^2/2 sigma^2) / (2 pi sigma^2)`` on ``t = -w..w`` with ``w`` the largest width up
    to 30 where it exceeds 1e-4 of its peak (w = 6 for sigma sqrt(2)), rows then columns, then the
    x/y derivative of the 2-D Gaussian ``-x exp(-(x^2+y^2)/2 sigma^2) / (pi sigma^2)``, all as
    replicated-border convolutions; magnitude ``sqrt(dx^2 + dy^2)``; the same thresholds, suppression
    and hysteresis, and no final thinning pass (with or without one, img1's CPBD is the same). No
    edge map of that release is available to compare with; on ``img1`` it reproduces the MATLAB CPBD
    value published for the LIVE images (0.1352566) exactly, which the current Canny does not
    (0.1349: one 64x64 block decides differently).

:func:`canny_edge_blocks` answers what CPBD asks of the Canny map (which blocks hold more than a share
of edge pixels) with the same per-pixel verdicts and less work: see its docstring.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

#: MATLAB rgb2gray coefficients (documented; the first row of the inverse NTSC YIQ matrix).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)

_SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8.0  # fspecial('sobel')'/8
_SOBEL_Y = np.ascontiguousarray(_SOBEL_X.T)  # fspecial('sobel')/8

CANNY_SIGMA = float(np.sqrt(2.0))
CANNY_NOT_EDGES = 0.7  # share of pixels below the high threshold
CANNY_RATIO = 0.4  # low = 0.4 x high


def matlab_round(x: np.ndarray) -> np.ndarray:
    """MATLAB's ``round``: halves away from zero (numpy rounds halves to even)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of uint8 RGB (..., 3) -> uint8; a 2-D array passes through unchanged."""
    rgb = np.asarray(rgb)
    if rgb.ndim < 3 or rgb.shape[-1] != 3:
        return rgb
    f = rgb.astype(np.float64)
    y = f[..., 0] * RGB2GRAY[0] + f[..., 1] * RGB2GRAY[1] + f[..., 2] * RGB2GRAY[2]
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


def _correlate(img: np.ndarray, kernel: np.ndarray, anchor: tuple[int, int] = (-1, -1)) -> np.ndarray:
    """Correlation with replicated borders in float64 (OpenCV ``filter2D``)."""
    return cv2.filter2D(img, cv2.CV_64F, kernel, anchor=anchor, borderType=cv2.BORDER_REPLICATE)


def _convolve_1d(img: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """MATLAB ``imfilter(img, taps, 'conv', 'replicate')`` for a 1-D kernel along ``axis`` (1 = rows)."""
    k = np.ascontiguousarray(taps[::-1], dtype=np.float64)  # convolution = correlation with the flip
    centre = (k.size - 1) // 2  # MATLAB centre floor((n+1)/2) (1-based) of the flipped kernel
    if axis == 1:
        return _correlate(img, k[None, :], (centre, 0))
    return _correlate(img, k[:, None], (0, centre))


# --------------------------------------------------------------------------------------------- Sobel


def sobel_edge_indices(
    gray: np.ndarray, thresh: float = 2.0, direction: str = "vertical", interior: bool = False
) -> np.ndarray:
    """Flat (row-major) indices of MATLAB ``edge(I, 'sobel', thresh, 'vertical')`` edge pixels (with
    ``interior``, only those off the image border).

    Whole-image comparisons of ``|bx|`` with its neighbours (``b = bx^2`` is monotone in ``|bx|``, so
    the comparisons, ties included, are those of ``b``); for uint8 input ``8 bx`` and ``8 by`` are
    exact int16 sums (OpenCV ``Sobel``), so nothing is rounded.
    """
    if direction != "vertical":
        raise ValueError("only direction='vertical' (what CPBD uses) is implemented")
    if thresh < 0:
        raise ValueError("thresh must be >= 0")
    img = np.asarray(gray)
    h, w = img.shape
    if img.dtype == np.uint8:
        bx = cv2.Sobel(img, cv2.CV_16S, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        by = cv2.Sobel(img, cv2.CV_16S, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        limit = min(int(np.floor(8.0 * thresh)), 2**15 - 1)  # |8 bx| > 8 thresh, in integers
    else:
        img = np.ascontiguousarray(img, dtype=np.float64)
        bx = _correlate(img, _SOBEL_X)
        by = _correlate(img, _SOBEL_Y)
        limit = thresh
    a = np.zeros((h + 2, w + 2), dtype=bx.dtype)  # |bx| with a ring of zeros (outside counts as 0)
    c = a[1:-1, 1:-1]
    np.abs(bx, out=c)
    edge = c > limit
    along_col = a[:-2, 1:-1] <= c
    along_col &= c > a[2:, 1:-1]
    along_row = a[1:-1, :-2] <= c
    along_row &= c > a[1:-1, 2:]
    along_row &= c >= np.abs(by)
    along_col |= along_row
    edge &= along_col
    if interior:
        edge[[0, -1], :] = False
        edge[:, [0, -1]] = False
    return np.flatnonzero(edge)


def sobel_edges(gray: np.ndarray, thresh: float = 2.0, direction: str = "vertical") -> np.ndarray:
    """MATLAB ``edge(I, 'sobel', thresh, 'vertical')`` on a 2-D image (bool map); see the module doc."""
    shape = np.shape(gray)
    out = np.zeros(shape[0] * shape[1], dtype=bool)
    out[sobel_edge_indices(gray, thresh, direction)] = True
    return out.reshape(shape)


# --------------------------------------------------------------------------------------------- Canny


@functools.lru_cache(maxsize=4)
def _current_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    length = 8 * int(np.ceil(sigma))
    half = (length - 1) / 2
    x = np.arange(-half, half + 1)
    gauss = np.exp(-(x**2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    gauss /= gauss.sum()
    deriv = np.gradient(gauss)
    pos, neg = deriv > 0, deriv < 0
    deriv[pos] /= deriv[pos].sum()
    deriv[neg] /= abs(deriv[neg].sum())
    return gauss, deriv


@functools.lru_cache(maxsize=4)
def _legacy_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    widths = np.arange(1, 31)
    ok = np.nonzero(np.exp(-(widths**2) / (2 * sigma**2)) > 1e-4)[0]
    w = int(widths[ok[-1]]) if ok.size else 1
    t = np.arange(-w, w + 1, dtype=np.float64)
    gauss = np.exp(-(t * t) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    x, y = np.meshgrid(t, t)
    dgau2d = -x * np.exp(-(x * x + y * y) / (2 * sigma**2)) / (np.pi * sigma**2)
    return gauss, dgau2d, np.ascontiguousarray(dgau2d.T)


def _magnitude(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``sqrt(dx^2 + dy^2)``, each operation rounded once as numpy would (OpenCV's element-wise
    multiply, add and sqrt, which are faster here; not ``cv2.magnitude``, which fuses a multiply-add)."""
    mag = cv2.multiply(dx, dx)
    cv2.add(mag, cv2.multiply(dy, dy), dst=mag)
    return cv2.sqrt(mag, dst=mag)


def canny_gradients(img: np.ndarray, sigma: float = CANNY_SIGMA, legacy: bool = False):
    """``(dx, dy, magnitude)`` of MATLAB's Canny before normalisation (float64)."""
    img = np.ascontiguousarray(img, dtype=np.float64)  # (OpenCV filters float64 faster than uint8)
    if legacy:
        gauss, kx, ky = _legacy_kernels(sigma)
        smooth = _convolve_1d(_convolve_1d(img, gauss, axis=1), gauss, axis=0)
        c = kx.shape[0] // 2
        dx = _correlate(smooth, np.ascontiguousarray(kx[::-1, ::-1]), (c, c))
        dy = _correlate(smooth, np.ascontiguousarray(ky[::-1, ::-1]), (c, c))
        return dx, dy, _magnitude(dx, dy)
    gauss, deriv = _current_kernels(sigma)
    dx = _convolve_1d(_convolve_1d(img, gauss, axis=0), deriv, axis=1)
    dy = _convolve_1d(_convolve_1d(img, gauss, axis=1), deriv, axis=0)
    return dx, dy, _magnitude(dx, dy)


def canny_thresholds(mag: np.ndarray) -> tuple[float, float]:
    """MATLAB's automatic (low, high) for a magnitude normalised to [0, 1]."""
    scaled = mag * 63
    scaled += 0.5
    # imhist(mag, 64): bin centres k/63, bin = floor(63 mag + 0.5) in 0..63
    if mag.size < 2**24:  # OpenCV's float32 counts are exact
        counts = cv2.calcHist([scaled.astype(np.uint8)], [0], None, [64], [0, 64]).ravel().astype(np.int64)
    else:
        counts = np.bincount(scaled.astype(np.intp).ravel(), minlength=64)
    high = (int(np.argmax(np.cumsum(counts) > CANNY_NOT_EDGES * mag.size)) + 1) / 64
    return CANNY_RATIO * high, high


# Offsets of the straight and diagonal neighbour on one side, by sector 2 * along_row + same (the
# other side is the negation): column sectors compare (r-1, c) with (r-1, c+1) or (r-1, c-1), row
# sectors (r, c+1) with (r-1, c+1) or (r+1, c+1).
def _sector_offsets(w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([-w, -w, 1, 1]), np.array([1 - w, -w - 1, 1 - w, w + 1])


def _local_maxima(dx: np.ndarray, dy: np.ndarray, mag: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The flat indices among ``idx`` (interior pixels with a non-zero gradient) that survive
    non-maximum suppression.

    MATLAB's four direction sectors, in closed form: a gradient more horizontal than vertical (or
    diagonal with dx, dy of the same sign) is compared along the row, otherwise along the column; the
    interpolation weight is d = min(|dx|, |dy|) / max(|dx|, |dy|) (= |dy/dx| or |dx/dy| as MATLAB
    writes it) and the diagonal partner lies on the side the gradient points to: on each side the
    magnitude is m[straight] (1 - d) + m[diagonal] d, and the pixel is kept when its magnitude is >=
    both sides. Each pixel's verdict depends on its neighbourhood only, so any subset can be tested,
    and large sets are tested in chunks (temporaries that stay in cache: 3x faster on 512x768).
    """
    if idx.size > _CHUNK:
        parts = [_local_maxima(dx, dy, mag, idx[i : i + _CHUNK]) for i in range(0, idx.size, _CHUNK)]
        return np.concatenate(parts)
    if idx.size == 0:
        return idx
    flat = mag.ravel()
    ix, iy, m = dx.ravel()[idx], dy.ravel()[idx], flat[idx]
    ax, ay = np.abs(ix), np.abs(iy)
    same = (ix * iy) > 0
    along_row = ax > ay
    along_row |= (ax == ay) & same
    d = np.minimum(ax, ay)
    d /= np.maximum(ax, ay)
    sector = along_row.view(np.uint8) * 2
    sector += same.view(np.uint8)
    straight_tab, diagonal_tab = _sector_offsets(mag.shape[1])
    straight, diagonal = straight_tab[sector], diagonal_tab[sector]
    e = 1 - d
    keep = m >= flat[idx + straight] * e + flat[idx + diagonal] * d
    keep &= m >= flat[idx - straight] * e + flat[idx - diagonal] * d
    return idx[keep]


_CHUNK = 8192


def _interior_above(mag: np.ndarray, level: float) -> np.ndarray:
    """Flat indices of the interior pixels with ``mag > level`` (border pixels are never edges)."""
    cand = mag > level
    cand[[0, -1], :] = False
    cand[:, [0, -1]] = False
    return np.flatnonzero(cand)


def _suppress(dx: np.ndarray, dy: np.ndarray, mag: np.ndarray, low: float) -> np.ndarray:
    """Non-maximum suppression of the candidates above ``low`` (> 0, interior pixels only); bool map."""
    keep = np.zeros(mag.size, dtype=bool)
    keep[_local_maxima(dx, dy, mag, _interior_above(mag, low))] = True
    return keep.reshape(mag.shape)


def _normalised_canny(gray: np.ndarray, sigma: float, legacy: bool):
    dx, dy, mag = canny_gradients(gray, sigma, legacy)
    peak = mag.max()
    if peak > 0:
        mag /= peak
    low, high = canny_thresholds(mag)
    return dx, dy, mag, low, high


def _hysteresis(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Weak pixels (bool map) 8-connected to a strong one (bool map, a subset of ``weak``)."""
    n, labels = cv2.connectedComponents(weak.view(np.uint8), connectivity=8)
    good = np.zeros(n, dtype=bool)
    good[labels[strong]] = True
    good[0] = False
    return good[labels]


def _edges(dx: np.ndarray, dy: np.ndarray, mag: np.ndarray, low: float, high: float) -> np.ndarray:
    weak = _suppress(dx, dy, mag, low)
    strong = weak & (mag > high)
    if not strong.any():
        return np.zeros(mag.shape, dtype=bool)
    return _hysteresis(weak, strong)


def canny_edges(gray: np.ndarray, sigma: float = CANNY_SIGMA, legacy: bool = False) -> np.ndarray:
    """MATLAB ``edge(I, 'canny')`` with its automatic thresholds (bool map); see the module doc."""
    return _edges(*_normalised_canny(gray, sigma, legacy))


@functools.lru_cache(maxsize=8)
def block_map(h: int, w: int, block: int) -> np.ndarray:
    """Flat map of each pixel's block number + 1 (row-major); 0 in the ignored right/bottom remainder."""
    nby, nbx = h // block, w // block
    out = np.zeros((h, w), dtype=np.intp)
    number = np.arange(1, nby * nbx + 1).reshape(nby, nbx)
    out[: nby * block, : nbx * block] = np.repeat(np.repeat(number, block, axis=0), block, axis=1)
    out.flags.writeable = False
    return out.ravel()


def _block_sums(mask: np.ndarray, block: int) -> np.ndarray:
    h, w = mask.shape
    nby, nbx = h // block, w // block
    return mask[: nby * block, : nbx * block].reshape(nby, block, nbx, block).sum(axis=(1, 3))


#: The strong candidates are first tested one in ``_SAMPLE`` (raster order); a block whose sample
#: already holds enough maxima is settled without testing the rest.
_SAMPLE = 8


def canny_edge_blocks(
    gray: np.ndarray,
    block: int,
    min_share: float,
    needed: np.ndarray | None = None,
    sigma: float = CANNY_SIGMA,
    legacy: bool = False,
) -> np.ndarray:
    """Which ``block`` x ``block`` blocks (a remainder at the right/bottom ignored) hold more than
    ``min_share`` of their pixels on :func:`canny_edges` edges: bool (rows // block, cols // block).

    Equal to counting :func:`canny_edges` per block (the per-pixel verdicts are the same), with less
    work: strong pixels (> high) that survive suppression are edges whatever the hysteresis does,
    and every edge is a suppression candidate (> low). So the strong candidates are tested a sample
    at a time, and a block is settled as soon as its strong maxima exceed the count (an edge block)
    or when its candidates cannot (not one). Only when a block in ``needed`` (bool, same shape as the
    result; all blocks when None) can only be settled by the hysteresis is the whole map computed.
    Blocks outside ``needed`` may be left unsettled (reported False).
    """
    h, w = np.shape(gray)
    nby, nbx = h // block, w // block
    nb = nby * nbx
    limit = min_share * block * block
    if nb == 0:
        return np.zeros((nby, nbx), dtype=bool)
    needed = np.ones(nb, dtype=bool) if needed is None else np.asarray(needed, dtype=bool).ravel()
    dx, dy, mag, low, high = _normalised_canny(gray, sigma, legacy)
    blocks = block_map(h, w, block)

    def hysteresis_needed(unsettled: np.ndarray) -> bool:
        """Whether a block short of strong maxima holds enough candidates (> low) to be an edge block."""
        if not unsettled.any():
            return False
        weak_cand = mag > low
        weak_cand[[0, -1], :] = False
        weak_cand[:, [0, -1]] = False
        return bool((unsettled & (_block_sums(weak_cand, block).ravel() > limit)).any())

    cand = _interior_above(mag, high)
    cand_block = blocks[cand]
    few = np.bincount(cand_block, minlength=nb + 1)[1:] <= limit  # too few strong candidates
    if hysteresis_needed(needed & few):  # (a cheap early exit where the hysteresis must decide)
        return _block_sums(_edges(dx, dy, mag, low, high), block) > limit
    kept = _local_maxima(dx, dy, mag, cand[::_SAMPLE])
    counts = np.bincount(blocks[kept], minlength=nb + 1)[1:]
    open_ = needed & ~few & (counts <= limit)
    if open_.any():  # test the rest of the strong candidates of the open blocks
        rest = np.ones(cand.size, dtype=bool)
        rest[::_SAMPLE] = False
        rest &= np.concatenate([[False], open_])[cand_block]
        counts += np.bincount(blocks[_local_maxima(dx, dy, mag, cand[rest])], minlength=nb + 1)[1:]
        if hysteresis_needed(open_ & (counts <= limit)):
            return _block_sums(_edges(dx, dy, mag, low, high), block) > limit
    return (counts > limit).reshape(nby, nbx)
