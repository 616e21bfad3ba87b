"""PSNR: peak signal-to-noise ratio per frame, data range 255, colour or grayscale.

Per frame: 10 log10(255^2 / MSE) with the MSE over all pixels (and channels for colour), exactly as
scikit-image's ``peak_signal_noise_ratio(ref, gen, data_range=255)``; the clip score is the mean of the
per-frame values. For uint8 frames the squared error is summed exactly (squares of the OpenCV absolute
difference, summed in float64, where every partial sum is an integer below 2^53), so the MSE, and the
PSNR, are bit for bit scikit-image's. Identical frames have infinite PSNR; the metric class caps each
frame at ``cap_db`` (100 dB by default) so that means and intervals stay finite, and says so in its
variant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from talkface.evaluate.metrics._image import GRAY_RULE, as_frames_hwc
from talkface.evaluate.metrics.base import ClipSample, Metric, MetricResult, register_metric

DATA_RANGE = 255.0
DEFAULT_CAP_DB = 100.0


def psnr_frames(
    generated: np.ndarray, reference: np.ndarray, gray: bool = False, cap_db: float | None = None
) -> np.ndarray:
    """Per-frame PSNR (dB) of uint8 frames (T, H, W, 3) or one image; ``gray`` uses BT.601 luma."""
    gen = as_frames_hwc(generated, gray)
    ref = as_frames_hwc(reference, gray)
    if gen.shape != ref.shape:
        raise ValueError(f"shape mismatch: generated {gen.shape} vs reference {ref.shape}")
    mse = _squared_error_sums(gen, ref) / int(np.prod(gen.shape[1:]))
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(DATA_RANGE**2 / mse)
    if cap_db is not None:
        out = np.minimum(out, cap_db)
    return out


def _squared_error_sums(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per frame, the sum over pixels and channels of (gen - ref)^2, in float64 ((T, H, W, C) input)."""
    t = gen.shape[0]
    if gen.dtype == np.uint8 and ref.dtype == np.uint8:
        diff = cv2.absdiff(gen.reshape(t, -1), ref.reshape(t, -1))
        out = np.empty(t)
        for i in range(t):  # one frame at a time: the float64 row stays in cache for the dot product
            row = diff[i].astype(np.float64)
            out[i] = np.dot(row, row)
        return out
    d = gen.astype(np.float64) - ref
    return (d * d).reshape(t, -1).sum(axis=1)


def psnr(
    generated: np.ndarray, reference: np.ndarray, gray: bool = False, cap_db: float | None = None
) -> float:
    """Mean per-frame PSNR in dB (inf for identical inputs unless ``cap_db`` is given)."""
    return float(np.mean(psnr_frames(generated, reference, gray=gray, cap_db=cap_db)))


@register_metric
class PSNR(Metric):
    name: ClassVar[str] = "psnr"
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"ref_frames"})
    doc: ClassVar[str] = "Peak signal-to-noise ratio vs the ground-truth frames (dB, mean over frames)."
    reference: ClassVar[str] = "equals skimage.metrics.peak_signal_noise_ratio(data_range=255) per frame"
    accepted_options: ClassVar[frozenset[str]] = frozenset({"color", "cap_db"})
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        "colour-range255-cap100": {"color": "colour"},
        "gray-range255-cap100": {"color": "gray"},
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.color = self.variant_option("color")
        self.cap_db = float(self.options.get("cap_db", DEFAULT_CAP_DB))

    @property
    def variant(self) -> str:
        return f"{self.color}-range255-cap{self.cap_db:g}"

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        if self.color == "gray":
            d["grayscale"] = GRAY_RULE
        return d

    def score(self, sample: ClipSample) -> MetricResult:
        gray = self.color == "gray"
        per_frame = psnr_frames(sample.frames, sample.ref_frames, gray=gray, cap_db=self.cap_db)
        return MetricResult(value=float(per_frame.mean()), per_frame=per_frame)
