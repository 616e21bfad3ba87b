"""The upside-down rule of the dlib landmark backend on the fixtures: margins, verdicts and cost.

    python benchmarks/bench_orientation.py --out benchmarks/results/

The rule (``talkface.core.landmarks.base.upside_down``, docs/landmarks.md "Orientation") scores the
box of the fitted points with dlib's HOG detector as it is and turned upside down. Clips: every
``--s1-step``-th GRID s1 fixture clip, the s2 and s23 clips, the first ``--s4`` GRID s4 (high-quality
layout) clips and the VoxCeleb-style clips. Per clip:

- upright, the default tracker (orientation measured on detections and every 5th tracked frame):
  frames with a face and frames rejected ``upside_down``; the same with the check off, for its cost
  (CPU time of ``track`` with against without it, and per measurement);
- upright, measured on every frame (``orientation_interval=1``): the margin as-is score - turned score
  on each frame (the rule needs >= 0.4 unless the turned score is under -0.5);
- turned 180 degrees and flipped vertically: frames with a face with the check (the default) and
  without it (the earlier tracker, whose fits put eyes on the forehead); the margin of each fit the
  unchecked tracker made on the turned copy, scored with the backend's own orientation test.

Writes DIR/orientation.json with the date, machine and load average.
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


def clips(s1_step: int, n_s4: int) -> list[tuple[str, Path]]:
    from talkface.utils.fixtures import fixtures_dir

    root = fixtures_dir()
    grid = root / "grid"
    out = [("s1", p) for p in sorted((grid / "s1").glob("*.mpg"))[::s1_step]]
    out += [(s, p) for s in ("s2", "s23") for p in sorted((grid / s).glob("*.mpg"))]
    out += [("s4", p) for p in sorted((root / "grid_hq" / "s4").rglob("*.mpg"))[:n_s4]]
    out += [(f"voxceleb_style/{p.stem}", p) for p in sorted((root / "voxceleb_style").glob("*.mp4"))]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--s1-step", type=int, default=5)
    parser.add_argument("--s4", type=int, default=1)
    args = parser.parse_args(argv)

    import cv2
    import numpy as np
    from timing import machine_facts

    from talkface import __version__
    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.landmarks.base import TURNED_FACE_MIN, UPRIGHT_MIN_MARGIN
    from talkface.core.landmarks.dlib_backend import ORIENTATION_INTERVAL, _points_box
    from talkface.core.media import read_video
    from talkface.utils.atomic import write_json

    chosen = clips(args.s1_step, args.s4)
    if not chosen:
        print("skipped: fixtures not found (set TALKFACE_FIXTURES)")
        return 0
    cv2.setNumThreads(1)
    load_start = [round(v, 2) for v in os.getloadavg()]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    on = get_landmark_backend("dlib")
    every = get_landmark_backend("dlib", orientation_interval=1)
    off = get_landmark_backend("dlib", check_orientation=False)

    def track(backend, frames):
        c0 = time.process_time()
        tr = backend.track(iter(frames))
        return tr, time.process_time() - c0

    warm = read_video(chosen[0][1])
    for backend in (on, every, off):  # models loaded and caches mapped before anything is timed
        backend.track(iter(warm))
    by_identity: dict[str, dict] = {}
    upright_margins, turned_margins = [], []
    for identity, path in chosen:
        identity = "voxceleb_style" if identity.startswith("voxceleb_style") else identity
        video = read_video(path)
        turned = np.ascontiguousarray(video[:, ::-1, ::-1])
        flipped = np.ascontiguousarray(video[:, ::-1])
        d = by_identity.setdefault(identity, {
            "clips": 0, "frames": 0, "upright_face_frames": 0, "upright_rejected_upside_down": 0,
            "upright_measurements": 0, "track_cpu_s_with_check": 0.0, "track_cpu_s_without_check": 0.0,
            "turned_face_frames_with_check": 0, "turned_face_frames_without_check": 0,
            "flipped_face_frames_with_check": 0, "flipped_face_frames_without_check": 0,
            "upright_margin_min": float("inf"), "upright_frames_scored": 0,
            "turned_fit_margin_max": float("-inf"), "turned_fits_scored": 0})
        d["clips"] += 1
        d["frames"] += len(video)
        tr, cpu_on = track(on, video)
        _, cpu_off = track(off, video)
        d["upright_face_frames"] += int(tr.face_found.sum())
        d["upright_rejected_upside_down"] += int(tr.rejected.get("upside_down", 0))
        d["upright_measurements"] += int(np.isfinite(tr.orientation).all(1).sum())
        d["track_cpu_s_with_check"] += cpu_on
        d["track_cpu_s_without_check"] += cpu_off
        o = every.track(iter(video)).orientation
        o = o[np.isfinite(o).all(1)]
        m = o[:, 0] - o[:, 1]
        upright_margins.extend(m.tolist())
        d["upright_frames_scored"] += len(m)
        if len(m):
            d["upright_margin_min"] = min(d["upright_margin_min"], float(m.min()))
        for name, copy in (("turned", turned), ("flipped", flipped)):
            d[f"{name}_face_frames_with_check"] += int(on.track(iter(copy)).face_found.sum())
            fits = off.track(iter(copy))
            d[f"{name}_face_frames_without_check"] += int(fits.face_found.sum())
            if name == "turned":
                for t in np.flatnonzero(fits.face_found):
                    a, b = on._orientation_scores(copy[t], _points_box(fits.points[t]))
                    if np.isfinite(a) and np.isfinite(b):
                        turned_margins.append(a - b)
                        d["turned_fits_scored"] += 1
                        d["turned_fit_margin_max"] = max(d["turned_fit_margin_max"], float(a - b))
        print(identity, path.name, {k: d[k] for k in ("upright_rejected_upside_down",
                                                     "turned_face_frames_with_check",
                                                     "turned_face_frames_without_check")}, flush=True)

    def total(key: str) -> float:
        return sum(d[key] for d in by_identity.values())

    for d in by_identity.values():  # an identity without a scored frame has no extreme
        for key in ("upright_margin_min", "turned_fit_margin_max"):
            if not np.isfinite(d[key]):
                d[key] = None
    measurements = total("upright_measurements")
    extra = total("track_cpu_s_with_check") - total("track_cpu_s_without_check")
    s1 = by_identity.get("s1", {})
    summary = {
        "identities": len(by_identity),
        "clips": int(total("clips")),
        "frames": int(total("frames")),
        "upright_face_frames": int(total("upright_face_frames")),
        "upright_rejected_upside_down": int(total("upright_rejected_upside_down")),
        "upright_frames_scored": len(upright_margins),
        "upright_margin_min": float(min(upright_margins)),
        "upright_margin_p1": float(np.percentile(upright_margins, 1)),
        "turned_fits_scored": len(turned_margins),
        "turned_fit_margin_max": float(max(turned_margins)) if turned_margins else None,
        "turned_face_frames_with_check": int(total("turned_face_frames_with_check")),
        "turned_face_frames_without_check": int(total("turned_face_frames_without_check")),
        "flipped_face_frames_with_check": int(total("flipped_face_frames_with_check")),
        "flipped_face_frames_without_check": int(total("flipped_face_frames_without_check")),
        "measured_share_of_upright_frames": measurements / total("frames"),
        "check_ms_per_measurement_cpu": 1e3 * extra / max(measurements, 1),
        "check_share_of_tracking_cpu": extra / total("track_cpu_s_without_check"),
        "s1_frames": int(s1.get("frames", 0)),
        "s1_upright_face_frames": int(s1.get("upright_face_frames", 0)),
        "s1_upright_rejected_upside_down": int(s1.get("upright_rejected_upside_down", 0)),
    }
    record = {
        "benchmark": "orientation",
        "talkface_version": __version__,
        "date": started,
        "machine": machine_facts(),
        "nice": os.nice(0),
        "load_average_before": load_start,
        "rule": {"upright_min_margin": UPRIGHT_MIN_MARGIN, "turned_face_min": TURNED_FACE_MIN,
                 "interval": ORIENTATION_INTERVAL},
        "clips_used": f"every {args.s1_step}th GRID s1 fixture clip, s2, s23, the first {args.s4} s4 "
                      "clip(s), the VoxCeleb-style clips",
        "s1_step": args.s1_step,
        "summary": summary,
        "by_identity": by_identity,
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "orientation.json", record)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()})
    print(f"wrote {args.out / 'orientation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
