"""Eye blinks from 68-point landmarks: eye aspect ratio (Soukupova & Cech, CVWW 2016) and blink events.

EAR per eye = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) over the eye's six points (0-based 36-41 and
42-47); the frame's EAR is the mean of both eyes. A blink is a run of at least ``min_frames``
consecutive frames (default 2, i.e. 80 ms at 25 fps) whose EAR is below the threshold. The default
threshold is adaptive: ``rel_threshold`` (0.75) x the clip's median EAR, because the open-eye EAR
depends on the person and the detector; a fixed threshold (e.g. 0.2) can be given instead.
Frames without landmarks (NaN) never count as closed and split runs.

What the duration counts: by default every frame of the run below the detection threshold, which
includes the frames where the lids are only partly lowered on the way down and up: on 24 GRID s1
clips it is twice what a person marks as "substantially closed" (mean 4.9 vs 2.5 frames;
data_manifests/annotations). ``closed_rel`` (variant ``...-closed0.6`` of ``blink_duration``) counts
instead the frames of each detected blink whose EAR is below ``closed_rel`` x the clip median (0.6:
mean 2.55 vs 2.47 frames, mean absolute error 1.1 frames per blink against the annotation, from which
0.6 was chosen).

:func:`detect_blinks` is the reusable part (the blink model uses it on generated eye landmarks).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from talkface.core.face68 import (
    DEFAULT_MIN_FRAMES,
    DEFAULT_REL_THRESHOLD,
    BlinkStats,
    detect_blinks,
    eye_aspect_ratio,
)
from talkface.evaluate.metrics.base import ClipSample, Metric, MetricResult, register_metric


class _Blinks(Metric):
    stat: ClassVar[str]
    unit: ClassVar[str]
    higher_is_better: ClassVar[bool | None] = None  # compare with the reference video's value
    needs: ClassVar[frozenset[str]] = frozenset({"landmarks"})
    reference: ClassVar[str] = "Soukupova & Cech, CVWW 2016 (eye aspect ratio)"
    accepted_options: ClassVar[frozenset[str]] = frozenset({"threshold", "rel_threshold", "min_frames"})
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        "ear-adaptive0.75-min2": {},
        "ear-fixed0.2-min2": {"threshold": 0.2},
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.threshold = self.options.get("threshold")
        self.rel_threshold = float(self.options.get("rel_threshold", DEFAULT_REL_THRESHOLD))
        self.min_frames = int(self.options.get("min_frames", DEFAULT_MIN_FRAMES))
        closed = self.options.get("closed_rel")
        self.closed_rel = None if closed is None else float(closed)

    @property
    def variant(self) -> str:
        rule = (
            f"fixed{float(self.threshold):g}"
            if self.threshold is not None
            else f"adaptive{self.rel_threshold:g}"
        )
        closed = "" if self.closed_rel is None else f"-closed{self.closed_rel:g}"
        return f"ear-{rule}-min{self.min_frames}{closed}"

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        d["threshold_rule"] = (
            f"EAR < {self.threshold}"
            if self.threshold is not None
            else f"EAR < {self.rel_threshold} x clip median EAR"
        )
        d["min_frames"] = self.min_frames
        d["units"] = self.unit
        d["validation"] = (
            "events against a human annotation of 55 blinks in 24 GRID s1 clips "
            "(data_manifests/annotations/grid_blinks.csv): precision 0.96, recall 0.89, F1 0.93"
        )
        if self.name == "blink_duration":
            d["duration_counts"] = (
                "every frame of the blink below the detection threshold (partly lowered lids included; "
                "about twice the frames a person marks as substantially closed)"
                if self.closed_rel is None
                else f"the blink's frames with EAR < {self.closed_rel} x clip median EAR "
                "(substantially closed: matches the human annotation's mean duration)"
            )
        return d

    def _stats(self, landmarks: np.ndarray, fps: float) -> BlinkStats:
        thr = None if self.threshold is None else float(self.threshold)
        return detect_blinks(
            eye_aspect_ratio(landmarks), fps, thr, self.rel_threshold, self.min_frames, self.closed_rel
        )

    def score(self, sample: ClipSample) -> MetricResult:
        ear = eye_aspect_ratio(sample.landmarks)
        stats = self._stats(sample.landmarks, sample.fps)
        details: dict[str, Any] = {"n_blinks": stats.count, "threshold": stats.threshold}
        if sample.ref_landmarks is not None:
            details["reference_value"] = getattr(self._stats(sample.ref_landmarks, sample.fps), self.stat)
        return MetricResult(value=float(getattr(stats, self.stat)), per_frame=ear, details=details)


@register_metric
class BlinkRate(_Blinks):
    name: ClassVar[str] = "blink_rate"
    stat: ClassVar[str] = "rate_per_min"
    unit: ClassVar[str] = "blinks per minute"
    doc: ClassVar[str] = "Blinks per minute (EAR below threshold for >= min_frames frames)."


@register_metric
class BlinkDuration(_Blinks):
    name: ClassVar[str] = "blink_duration"
    stat: ClassVar[str] = "mean_duration_s"
    unit: ClassVar[str] = "seconds"
    doc: ClassVar[str] = (
        "Mean blink duration in seconds: frames below the detection threshold (default) or, variant "
        "closed0.6, frames substantially closed (NaN when the clip has no blink)."
    )
    accepted_options: ClassVar[frozenset[str]] = _Blinks.accepted_options | {"closed_rel"}
    variants: ClassVar[dict[str, dict[str, Any]]] = {
        **_Blinks.variants,
        "ear-adaptive0.75-min2-closed0.6": {"closed_rel": 0.6},
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.closed_rel is not None:
            self.stat = "mean_closed_duration_s"


@register_metric
class BlinkInterval(_Blinks):
    name: ClassVar[str] = "blink_interval"
    stat: ClassVar[str] = "mean_interval_s"
    unit: ClassVar[str] = "seconds"
    doc: ClassVar[str] = "Mean time between consecutive blink onsets in seconds (NaN with < 2 blinks)."
