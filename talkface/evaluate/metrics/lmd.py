"""LMD: landmark distance between generated and ground-truth frames (Chen et al., ECCV 2018).

Per frame, each point set (mouth = points 48-67, face = all 68, 0-based iBUG order) is centred on its
own centroid, in the generated and the real frame separately, so a global head shift does not count.
Per frame: mean Euclidean distance per point (default) or the sum over points (ATVGnet's script, i.e.
20 x the mean on the mouth). The clip score is the mean over frames where both sides have landmarks.
Units are pixels of the frames the landmarks were found on; the runner detects both at the reference
crop size, and the definition states it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from talkface.core.face68 import POINT_SETS, REDUCTIONS, lmd, lmd_frames  # noqa: F401  (lmd: the functional twin)
from talkface.evaluate.metrics.base import ClipSample, Metric, MetricResult, register_metric


class _LMD(Metric):
    points: ClassVar[str]
    higher_is_better: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"landmarks", "ref_landmarks"})
    reference: ClassVar[str] = "Chen et al. ECCV 2018 (LMD); sum reduction as ATVGnet (CVPR 2019) evaluation"
    accepted_options: ClassVar[frozenset[str]] = frozenset({"reduction"})
    variants: ClassVar[dict[str, dict[str, Any]]] = {f"centroid-{r}": {"reduction": r} for r in REDUCTIONS}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reduction = self.variant_option("reduction")

    @property
    def variant(self) -> str:
        return f"centroid-{self.reduction}"

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        idx = POINT_SETS[self.points]
        d["points"] = f"{self.points}: 0-based {idx[0]}-{idx[-1]} ({idx.size} points)"
        d["units"] = "pixels at the stated resolution"
        return d

    def score(self, sample: ClipSample) -> MetricResult:
        per_frame = lmd_frames(sample.landmarks, sample.ref_landmarks, self.points, self.reduction)
        valid = np.isfinite(per_frame)
        n_missing = int((~valid).sum())
        if not valid.any():
            return MetricResult(float("nan"), per_frame, "no frame has landmarks on both sides")
        return MetricResult(
            value=float(per_frame[valid].mean()),
            per_frame=per_frame,
            details={"frames_without_landmarks": n_missing},
        )


@register_metric
class LMDMouth(_LMD):
    name: ClassVar[str] = "lmd_mouth"
    points: ClassVar[str] = "mouth"
    doc: ClassVar[str] = "Mouth landmark distance (points 48-67, centroid-aligned per frame), pixels."


@register_metric
class LMDFace(_LMD):
    name: ClassVar[str] = "lmd_face"
    points: ClassVar[str] = "face"
    doc: ClassVar[str] = "Whole-face landmark distance (all 68 points, centroid-aligned per frame), pixels."
