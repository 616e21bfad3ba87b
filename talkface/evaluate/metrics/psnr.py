"""PSNR: peak signal-to-noise ratio per frame, data range 255, colour or grayscale.

Per frame: 10 log10(255^2 / MSE) with the MSE over all pixels (and channels for colour), exactly as
scikit-image's ``peak_signal_noise_ratio(ref, gen, data_range=255)``; the clip score is the mean of the
per-frame values. Identical frames have infinite PSNR; the metric class caps each frame at
``cap_db`` (100 dB by default) so that means and intervals stay finite, and says so in its variant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from talkface.evaluate.metrics._image import GRAY_RULE, as_frames
from talkface.evaluate.metrics.base import ClipSample, Metric, MetricResult, register_metric

DATA_RANGE = 255.0
DEFAULT_CAP_DB = 100.0


def psnr_frames(
    generated: np.ndarray, reference: np.ndarray, gray: bool = False, cap_db: float | None = None
) -> np.ndarray:
    """Per-frame PSNR (dB) of uint8 frames (T, H, W, 3) or one image; ``gray`` uses BT.601 luma."""
    gen = as_frames(generated, gray)
    ref = as_frames(reference, gray)
    if gen.shape != ref.shape:
        raise ValueError(f"shape mismatch: generated {gen.shape} vs reference {ref.shape}")
    mse = ((gen - ref) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(DATA_RANGE**2 / mse)
    if cap_db is not None:
        out = np.minimum(out, cap_db)
    return out


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
