"""Small results folders for the leaderboard tests, written through ResultsStore like evaluate does.

Values are deterministic (no random numbers): ``mean + spread * OFFSETS[i]`` for clip i, so the
golden files depend only on the code. This module holds helpers, no tests.
"""

from __future__ import annotations

import math
from pathlib import Path

from talkface.store.results import ResultRow, ResultsStore

XSS = "<img src=x onerror=alert(1)>"
CLIPS = [f"s1_clip{i:02d}" for i in range(10)]
# zero-mean, fixed pattern (sums to 0 over 10 clips)
OFFSETS = [-1.0, 0.6, -0.2, 1.0, -0.6, 0.2, 0.8, -0.8, 0.4, -0.4]
#: Real videos' per-clip blink rate (blinks/min) and duration (s), recorded in each row's details.
REAL_BLINK_RATE = [20.0, 0.0, 20.0, 40.0, 20.0, 0.0, 20.0, 20.0, 40.0, 20.0]
REAL_BLINK_DURATION = [0.2, math.nan, 0.24, 0.2, 0.16, math.nan, 0.2, 0.24, 0.2, 0.16]

PROTOCOL = {
    "dataset": "grid",
    "protocol": "seen",
    "part": "test",
    "crop_size": 128,
    "reference": "/data/grid-prepared",
    "reference_id": "0123456789abcdef",
}

DEFINITIONS = {
    "lmd_mouth": ("centroid-mean", False, "pixels at the stated resolution",
                  "Mouth landmark distance (points 48-67, centroid-aligned per frame), pixels."),
    "psnr": ("colour-range255-cap100", True, None,
             "Peak signal-to-noise ratio vs the ground-truth frames (dB, mean over frames)."),
    "ssim": ("gaussian11-colour-range255", True, None,
             "Structural similarity vs the ground-truth frames (mean over frames)."),
    "blink_rate": ("ear-adaptive0.75-min2", None, "blinks per minute",
                   "Blinks per minute (EAR below threshold for >= min_frames frames)."),
    "blink_duration": ("ear-adaptive0.75-min2", None, "seconds",
                       "Mean blink duration in seconds (NaN when the clip has no blink)."),
}


def definition(metric: str, variant: str | None = None, **change) -> dict:
    v, hib, units, doc = DEFINITIONS[metric]
    d = {
        "name": metric,
        "variant": variant or v,
        "higher_is_better": hib,
        "direction": (
            "closer to reference" if hib is None else "higher is better" if hib else "lower is better"
        ),
        "resolution": "reference crop size 128x128 (generated frames resized to it)",
        "doc": doc,
        "talkface_version": "0.1.0",
        "options": {},
        "weights_sha256": None,
    }
    if units:
        d["units"] = units
    d.update(change)
    return d


def rows_for(method: str, spec: dict[str, tuple[float, float]], failed: dict[str, int] | None = None,
             definitions: dict[str, dict] | None = None) -> list[ResultRow]:
    """``spec``: metric -> (mean, spread); ``failed``: metric -> number of clips that failed."""
    rows = []
    for metric, (mean, spread) in spec.items():
        d = (definitions or {}).get(metric) or definition(metric)
        n_failed = (failed or {}).get(metric, 0)
        for i, clip in enumerate(CLIPS):
            value = mean + spread * OFFSETS[i]
            details: dict = {}
            if metric == "blink_rate":
                details["reference_value"] = REAL_BLINK_RATE[i]
            if metric == "blink_duration":
                details["reference_value"] = REAL_BLINK_DURATION[i]
                if i in (1, 5):  # no blink in these clips: NaN without an error
                    value = math.nan
            error = None
            if i >= len(CLIPS) - n_failed:
                value, error = math.nan, "video: ValueError: unreadable"
            rows.append(ResultRow(method, clip, metric, d["variant"], value, per_frame=None, error=error,
                                  flags=[], details=details, definition=d))
    return rows


def write_method(root: Path, method: str, spec: dict[str, tuple[float, float]], protocol: dict | None = None,
                 failed: dict[str, int] | None = None, definitions: dict[str, dict] | None = None,
                 record_protocol: bool = True) -> Path:
    record: dict = {"method": method, "talkface_version": "0.1.0"}
    if record_protocol:
        record["protocol"] = dict(protocol or PROTOCOL)
    ResultsStore(root).replace_method(method, rows_for(method, spec, failed, definitions), record)
    return root


#: The golden fixture: five methods, five metrics (lmd lower, psnr/ssim higher, blinks closer to real).
GOLDEN_METHODS: dict[str, dict[str, tuple[float, float]]] = {
    "ground-truth": {"lmd_mouth": (0.2, 0.05), "psnr": (42.0, 1.0), "ssim": (0.98, 0.005),
                     "blink_rate": (20.0, 10.0), "blink_duration": (0.2, 0.02)},
    "static-frame": {"lmd_mouth": (2.4, 0.3), "psnr": (27.5, 1.0), "ssim": (0.84, 0.02),
                     "blink_rate": (0.0, 0.0), "blink_duration": (math.nan, 0.0)},
    "ours": {"lmd_mouth": (1.3, 0.2), "psnr": (30.0, 1.0), "ssim": (0.871, 0.02),
             "blink_rate": (16.0, 8.0), "blink_duration": (0.22, 0.03)},
    "mean-face": {"lmd_mouth": (2.0, 0.2), "psnr": (28.2, 1.0), "ssim": (0.868, 0.02),
                  "blink_rate": (30.0, 8.0), "blink_duration": (0.4, 0.05)},
    XSS: {"lmd_mouth": (3.0, 0.3), "psnr": (20.0, 1.0), "ssim": (0.7, 0.02),
          "blink_rate": (60.0, 10.0), "blink_duration": (0.3, 0.05)},
}


def write_golden(root: Path) -> Path:
    for method, spec in GOLDEN_METHODS.items():
        write_method(root, method, spec, failed={"psnr": 2} if method == "mean-face" else None)
    return root
