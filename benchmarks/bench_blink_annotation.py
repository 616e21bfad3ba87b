"""The blink detector against the committed blink annotation of 24 GRID s1 fixture clips.

    python benchmarks/bench_blink_annotation.py --out benchmarks/results/

Scores ``talkface.evaluate.metrics.blinks.detect_blinks`` (the default ``ear-adaptive0.75-min2`` rule,
and the ``closed0.6`` duration) against ``data_manifests/annotations/grid_blinks.csv`` with the scoring
code of ``tests/test_blink_annotation.py`` itself (its ``_evaluate``: event-level precision, recall and
F1, blink rates, durations), so the file holds the numbers the test checks. Landmarks: the dlib backend
with its default settings on the fixture clips. Writes DIR/blink_annotation.json with the date, machine,
load and the annotation file's SHA-256.

Who marked the annotation, how, and in how many passes: data_manifests/annotations/README.md (one
annotator, the talkface session that wrote the detector, in one pass). The ``closed0.6`` level was
chosen on this annotation, so its agreement here is a fit, not an independent check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

ANNOTATION = ROOT / "data_manifests" / "annotations" / "grid_blinks.csv"
SCORING = ROOT / "tests" / "test_blink_annotation.py"


def _scoring_module():
    """tests/test_blink_annotation.py, loaded by path: its ``_evaluate`` is the one scoring rule."""
    sys.path.insert(0, str(SCORING.parent))  # the test module may import its folder's helpers
    spec = importlib.util.spec_from_file_location("_blink_annotation_scoring", SCORING)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import pandas as pd
    from timing import machine_facts

    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video
    from talkface.evaluate.metrics.blinks import eye_aspect_ratio
    from talkface.utils.atomic import write_json
    from talkface.utils.fixtures import fixtures_dir

    grid = fixtures_dir() / "grid"
    if not grid.is_dir():
        print(f"skipped: GRID fixtures not found at {grid} (set TALKFACE_FIXTURES)")
        return 0
    scoring = _scoring_module()
    load_start = [round(v, 2) for v in os.getloadavg()]
    t0, c0 = time.perf_counter(), time.process_time()
    backend = get_landmark_backend("dlib")
    videos = sorted(pd.read_csv(ANNOTATION)["video"].unique())
    ears = {v: eye_aspect_ratio(backend.track(iter(read_video(grid / v))).points) for v in videos}

    def scored(closed_rel: float | None) -> dict:
        res = {k: float(v) for k, v in scoring._evaluate(ears, closed_rel=closed_rel).items()}
        res["matched"] = round(res["precision"] * res["detected"])
        for k in ("marked", "detected", "matched"):
            res[k] = int(res[k])
        return res

    record = {
        "benchmark": "blink_annotation",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "load_average_before": load_start,
        "annotation": {"file": ANNOTATION.relative_to(ROOT).as_posix(),
                       "sha256": hashlib.sha256(ANNOTATION.read_bytes()).hexdigest(),
                       "protocol": "data_manifests/annotations/README.md",
                       "clips": len(videos), "seconds": len(videos) * 75 / scoring.FPS},
        "scoring": "tests/test_blink_annotation.py::_evaluate (spans overlap or touch, one to one, "
                   "in time order)",
        "landmarks": backend.settings(),
        "default": scored(None),
        "closed_duration": {
            "variant": "closed0.6", "closed_rel": 0.6, **scored(0.6),
            "note": "the closed0.6 level was chosen on this annotation: its agreement is a fit"},
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "blink_annotation.json", record)
    d = record["default"]
    print(f"blink annotation: {d['marked']} marked, {d['detected']} detected, {d['matched']} matched: "
          f"precision {d['precision']:.3f}, recall {d['recall']:.3f}, F1 {d['f1']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
