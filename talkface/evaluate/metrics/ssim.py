"""SSIM (Wang et al. 2004), batched over frames (one OpenCV filter call per chunk), in two conventions.

- ``gaussian11``: 11x11 Gaussian window, sigma 1.5, population covariance: equals scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``
  (and torchmetrics' default window).
- ``uniform7``: 7x7 uniform window with sample covariance: scikit-image's default.
- ``wang-matlab``: the authors' MATLAB ``ssim_index.m`` on MATLAB ``rgb2gray`` images (the value IQA
  toolboxes publish as official): ``gaussian11`` on the gray image, no downsampling. (The later
  ``ssim.m`` downsamples by round(min(H, W)/256), which is 1, i.e. none, for images under 384 px.)

Both use K1=0.01, K2=0.03, data range 255, and average the SSIM map over the pixels whose window lies
inside the image (scikit-image crops the same border), then over channels for colour. The clip score
is the mean of per-frame values.

Computation: frames stay in their (T, H, W, C) layout; per chunk of frames the five maps (x, y, x^2,
y^2, xy, on values centred at 128) are stacked into one tall multi-channel float32 image for a single
separable OpenCV filter call, the SSIM formula runs in float32 on the valid pixels, and the per-frame
means are accumulated in float64. Centring keeps the second moments small, so the result stays within
~1e-6 of float64 (tests hold it to scikit-image at 1e-4); identical inputs give exactly 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from talkface.evaluate.metrics._image import GRAY_RULE, as_frames_hwc
from talkface.evaluate.metrics.base import ClipSample, Metric, MetricResult, register_metric

DATA_RANGE = 255.0
K1, K2 = 0.01, 0.03
WINDOWS = ("gaussian11", "uniform7")
_CHUNK_PIXELS = 100_000  # frames*channels*H*W per chunk: the five float32 maps stay in cache
_CENTRE = np.float32(128.0)


def _window_1d(window: str) -> tuple[np.ndarray, float]:
    """The 1-D separable window and the covariance normalisation for ``window``."""
    if window == "gaussian11":
        sigma, radius = 1.5, 5  # scikit-image: radius = int(3.5 * sigma + 0.5)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        w = np.exp(-(x**2) / (2 * sigma**2))
        return w / w.sum(), 1.0
    if window == "uniform7":
        n = 7
        return np.full(n, 1.0 / n), (n * n) / (n * n - 1.0)
    raise ValueError(f"unknown SSIM window {window!r}; choose from {WINDOWS}")


def _ssim_chunk(x: np.ndarray, y: np.ndarray, w1: np.ndarray, cov_norm: float) -> np.ndarray:
    """(N, H, W, C) -> (N,) mean SSIM over the valid pixels, then over channels.

    The maps of all frames are filtered as one tall image (N*5 frames high, C channels): rows near a
    frame's top or bottom see the neighbouring frame, but exactly those rows are cropped away.
    """
    n, h, w, c = x.shape
    maps = np.empty((5, n, h, w, c), np.float32)
    np.subtract(x, _CENTRE, out=maps[0], dtype=np.float32)
    np.subtract(y, _CENTRE, out=maps[1], dtype=np.float32)
    np.multiply(maps[0], maps[0], out=maps[2])
    np.multiply(maps[1], maps[1], out=maps[3])
    np.multiply(maps[0], maps[1], out=maps[4])
    k = w1.astype(np.float32)
    r = len(w1) // 2
    tall = maps.reshape(5 * n * h, w, c)
    filtered = cv2.sepFilter2D(tall, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)
    ux, uy, uxx, uyy, uxy = filtered.reshape(5, n, h, w, c)[:, :, r : h - r, r : w - r]
    # variances and covariance (the centring cancels), scaled by the covariance normalisation
    vxy = uxy - ux * uy
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    if cov_norm != 1.0:
        norm = np.float32(cov_norm)
        vxy *= norm
        vx *= norm
        vy *= norm
    ux += _CENTRE  # the means back on the 0-255 scale (in place: ``filtered`` is ours)
    uy += _CENTRE
    c1, c2 = np.float32((K1 * DATA_RANGE) ** 2), np.float32((K2 * DATA_RANGE) ** 2)
    # ((2 ux uy + c1)(2 vxy + c2)) / ((ux^2 + uy^2 + c1)(vx + vy + c2)), in the same order for x and
    # y, so that identical inputs give exactly 1
    num = ux * uy
    num *= 2
    num += c1
    vxy *= 2
    vxy += c2
    num *= vxy
    den = ux * ux
    den += uy * uy
    den += c1
    vx += vy
    vx += c2
    den *= vx
    num /= den
    # per-frame means with float64 accumulation (OpenCV's mean), averaged over channels
    return np.array([np.mean(cv2.mean(num[i])[:c]) for i in range(n)])


def ssim_frames(
    generated: np.ndarray, reference: np.ndarray, window: str = "gaussian11", gray: bool = False
) -> np.ndarray:
    """Per-frame SSIM of uint8 frames (T, H, W, 3) or one image (H, W, 3) / gray (H, W)."""
    gen = as_frames_hwc(generated, gray)
    ref = as_frames_hwc(reference, gray)
    if gen.shape != ref.shape:
        raise ValueError(f"shape mismatch: generated {gen.shape} vs reference {ref.shape}")
    w1, cov_norm = _window_1d(window)
    k = len(w1)
    if min(gen.shape[1:3]) < k:
        raise ValueError(f"images of {gen.shape[1:3]} are smaller than the {k}x{k} SSIM window")
    per = max(1, _CHUNK_PIXELS // int(np.prod(gen.shape[1:])))
    out = [_ssim_chunk(gen[i : i + per], ref[i : i + per], w1, cov_norm) for i in range(0, gen.shape[0], per)]
    return np.concatenate(out) if out else np.zeros(0)


def ssim(
    generated: np.ndarray, reference: np.ndarray, window: str = "gaussian11", gray: bool = False
) -> float:
    """Mean per-frame SSIM (1 for identical inputs)."""
    return float(np.mean(ssim_frames(generated, reference, window=window, gray=gray)))


def matlab_gray_frames(frames: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of uint8 RGB frames, as float64 (gray input passes through)."""
    from talkface.evaluate.metrics.matlab_edge import rgb2gray

    x = np.asarray(frames)
    return (rgb2gray(x) if x.ndim >= 3 and x.shape[-1] == 3 else x).astype(np.float64)


@register_metric
class SSIM(Metric):
    name: ClassVar[str] = "ssim"
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"ref_frames"})
    doc: ClassVar[str] = "Structural similarity vs the ground-truth frames (mean over frames)."
    reference: ClassVar[str] = (
        "Wang et al. 2004; equals skimage.metrics.structural_similarity with the matching window arguments"
    )
    accepted_options: ClassVar[frozenset[str]] = frozenset({"window", "color"})
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        **{f"{w}-{c}-range255": {"window": w, "color": c} for w in WINDOWS for c in ("colour", "gray")},
        "wang-matlab": {"window": "gaussian11", "color": "wang-matlab"},
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.window = self.variant_option("window")
        self.color = self.variant_option("color")
        if self.color == "wang-matlab" and self.window != "gaussian11":
            raise ValueError("the wang-matlab variant uses the gaussian11 window")

    @property
    def variant(self) -> str:
        if self.color == "wang-matlab":
            return "wang-matlab"
        return f"{self.window}-{self.color}-range255"

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        d["window"] = (
            "11x11 Gaussian sigma 1.5, population covariance"
            if self.window == "gaussian11"
            else "7x7 uniform, sample covariance"
        )
        if self.color == "gray":
            d["grayscale"] = GRAY_RULE
        if self.color == "wang-matlab":
            d["grayscale"] = (
                "MATLAB rgb2gray (0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B)"
            )
            d["downsampling"] = "none"
            d["reference_code"] = "Wang's ssim_index.m (MATLAB)"
        return d

    def score(self, sample: ClipSample) -> MetricResult:
        if self.color == "wang-matlab":
            gen = matlab_gray_frames(sample.frames)
            ref = matlab_gray_frames(sample.ref_frames)
            per_frame = ssim_frames(gen, ref, window="gaussian11", gray=True)
            return MetricResult(value=float(per_frame.mean()), per_frame=per_frame)
        per_frame = ssim_frames(
            sample.frames, sample.ref_frames, window=self.window, gray=self.color == "gray"
        )
        return MetricResult(value=float(per_frame.mean()), per_frame=per_frame)
