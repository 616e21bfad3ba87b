"""How well ``identity_dlib`` tells people apart on the GRID fixtures: Euclidean and cosine side by side.

    python benchmarks/bench_identity_separation.py --out benchmarks/results/

The identity image is frame 0 of the first s1 clip (``bbaf2n``); every 15th frame of five videos is
scored against it with ``identity_dlib`` (``euclidean``, lower is better, dlib's same-person threshold
0.6) and ``identity_dlib:cosine`` (higher is better): the same clip's other frames, another s1 clip,
a clip of s2 and one of s23, and a still video of the identity frame itself. Landmarks: dlib's detector
and 68-point model on every scored frame (as ``tests/test_metrics_identity.py``'s
``test_dlib_euclidean_discriminates_on_fixtures``, which checks the separation at 0.6 on every 25th
frame). Writes DIR/identity_separation.json with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

FRAME_STEP = 15
THRESHOLD = 0.6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from timing import grid_fixtures, machine_facts, write_result

    from talkface import __version__
    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video
    from talkface.evaluate.metrics import get_metric
    from talkface.evaluate.metrics.base import ClipSample

    grid = grid_fixtures()
    if grid is None:
        return 0
    load_start = [round(v, 2) for v in os.getloadavg()]
    t0, c0 = time.perf_counter(), time.process_time()
    backend = get_landmark_backend("dlib")
    s1 = sorted((grid / "s1").glob("*.mpg"))
    identity_clip = s1[0]
    a = read_video(identity_clip)
    other_s1 = s1[60]
    s2 = sorted((grid / "s2").glob("*.mpg"))[0]
    s23 = sorted((grid / "s23").glob("*.mpg"))[0]
    rows = [
        ("same_clip", "the same clip's other frames", f"s1/{identity_clip.name} frames 1..", a[1:]),
        ("same_speaker", "another clip of the same speaker (s1)", f"s1/{other_s1.name}",
         read_video(other_s1)),
        ("other_speaker_s2", "another speaker, s2", f"s2/{s2.name}", read_video(s2)),
        ("other_speaker_s23", "another speaker, s23", f"s23/{s23.name}", read_video(s23)),
        ("static_identity_frame", "a static video of the identity frame", "frame 0 repeated",
         np.repeat(a[:1], 3 * FRAME_STEP, axis=0)),
    ]
    id_lm = backend.detect(a[0])
    euclid = get_metric("identity_dlib", frame_step=1)
    cosine = get_metric("identity_dlib:cosine", frame_step=1)
    out_rows = []
    for key, label, source, video in rows:
        frames = video[::FRAME_STEP]
        lms = np.stack([backend.detect(f) for f in frames])
        sample = ClipSample(key, frames, 25.0, landmarks=lms, identity_image=a[0],
                            extras={"identity_landmarks": id_lm})
        e, c = euclid(sample), cosine(sample)
        if e.error or c.error:
            raise RuntimeError(f"{key}: {e.error or c.error}")
        out_rows.append({"key": key, "label": label, "source": source, "frames_scored": len(frames),
                         "euclidean": float(e.value), "cosine": float(c.value),
                         "same_person_share": float(e.details.get("same_person_share", float("nan")))})
        print(f"{label}: euclidean {e.value:.3f}, cosine {c.value:.3f}", flush=True)
    by = {r["key"]: r for r in out_rows}
    same = max(by["same_clip"]["euclidean"], by["same_speaker"]["euclidean"])
    other = min(by["other_speaker_s2"]["euclidean"], by["other_speaker_s23"]["euclidean"])
    record = {
        "benchmark": "identity_separation",
        "talkface_version": __version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(torch=torch.__version__),
        "nice": os.nice(0),
        "load_average_before": load_start,
        "identity_image": f"s1/{identity_clip.name} frame 0",
        "frame_step": FRAME_STEP,
        "landmarks": "dlib detector + 68-point model on every scored frame",
        "threshold": THRESHOLD,
        "rows": out_rows,
        "largest_same_speaker_euclidean": same,
        "smallest_other_speaker_euclidean": other,
        "separated_at_threshold": bool(same < THRESHOLD < other),
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    write_result(args.out, "identity_separation.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
