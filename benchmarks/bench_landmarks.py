"""Landmark stage speed and accuracy: talkface's tracking dlib backend vs the naive per-frame loop.

    python benchmarks/bench_landmarks.py --out benchmarks/results/ [--clips 12]

The naive loop is what users write otherwise: dlib HOG detection + 68-point prediction on every frame,
calling ``dlib.get_frontal_face_detector`` and ``dlib.shape_predictor`` directly (same model files,
upsample 0, best-scoring box), not through talkface, whose predictor runs batched in NumPy. Both run
on the same decoded frames (decoding is excluded) on one core. Reports frames/s (CPU time of this
process, which is robust to other load on a shared machine, and wall time), the ratio, and the
mean/max deviation of the tracked landmarks from the per-frame ones in source pixels (GRID 360x288),
plus the same on the VoxCeleb-style clips (224x224, head motion). Writes DIR/landmarks.json.

Every clip is timed ``--repeat`` times on each side (at least 3, the two sides alternating); a pass is
one timing of every clip, and each figure is the median over the passes (min and max kept), with the
load average before and after and whether it was measured under load (benchmarks/timing.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkface.core.landmarks import get_landmark_backend  # noqa: E402
from talkface.core.landmarks.dlib_models import dlib_model_path  # noqa: E402
from talkface.core.media import read_video  # noqa: E402
from talkface.utils.atomic import write_json  # noqa: E402
from talkface.utils.fixtures import fixtures_dir  # noqa: E402
from talkface.utils.progress import make_progress  # noqa: E402
from talkface.utils.provenance import provenance  # noqa: E402


def _timed(backend, frames: np.ndarray):
    c0, w0 = time.process_time(), time.perf_counter()
    track = backend.track(frames)
    return track, time.process_time() - c0, time.perf_counter() - w0


class NaiveDlibLoop:
    """HOG detection + dlib's own 68-point predictor on every frame: the loop users write by hand."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_path("shape_68")))

    def track(self, frames: np.ndarray) -> SimpleNamespace:
        points = np.full((len(frames), 68, 2), np.nan, np.float32)
        for t, frame in enumerate(frames):
            boxes, scores, _ = self.detector.run(frame, 0, 0)
            if boxes:
                shape = self.predictor(frame, boxes[int(np.argmax(scores))])
                points[t] = [(p.x, p.y) for p in shape.parts()]
        return SimpleNamespace(points=points, face_found=np.isfinite(points[:, 0, 0]))


def run(clips: list[Path], repeat: int = 3) -> dict:
    from timing import window

    tracker = get_landmark_backend("dlib")
    naive = NaiveDlibLoop()
    keys = ("track_cpu", "track_wall", "naive_cpu", "naive_wall")
    passes = [dict.fromkeys(keys, 0.0) for _ in range(repeat)]  # one timing of every clip each
    frames_total = 0
    per_clip, devs, detected = [], [], 0
    win = window()
    with make_progress() as progress:
        task = progress.add_task("landmarks", total=len(clips), info="")
        for clip in clips:
            frames = read_video(clip, fps=25)
            for i, totals in enumerate(passes):
                sides = [("track", tracker), ("naive", naive)]
                for side, backend in sides if i % 2 == 0 else sides[::-1]:
                    out, cpu, wall = _timed(backend, frames)
                    totals[f"{side}_cpu"] += cpu
                    totals[f"{side}_wall"] += wall
                    if side == "track":
                        t = out
                    else:
                        n = out
            both = t.face_found & n.face_found
            dev = np.linalg.norm(t.points[both] - n.points[both], axis=-1)
            devs.append(dev.ravel())
            detected += int(t.detected.sum())
            frames_total += len(frames)
            per_clip.append({
                "clip": f"{clip.parent.name}/{clip.name}",
                "frames": len(frames),
                "size": list(frames.shape[1:3][::-1]),
                "faces_tracked": int(t.face_found.sum()),
                "faces_naive": int(n.face_found.sum()),
                "detector_runs": int(t.detected.sum()),
                "mean_dev_px": float(dev.mean()) if dev.size else None,
                "max_dev_px": float(dev.max()) if dev.size else None,
            })
            progress.update(task, advance=1, info=f"{clip.name} dev {dev.mean():.2f}px")
    load = win.close()
    totals = {k: float(np.median([p[k] for p in passes])) for k in keys}
    spread = {f"{k}_s_{stat}": round(float(fn([p[k] for p in passes])), 4)
              for k in keys for stat, fn in (("min", np.min), ("max", np.max))}
    spread.update({f"{k}_s_passes": [round(p[k], 4) for p in passes] for k in keys})
    allDev = np.concatenate(devs) if devs else np.zeros(0)
    f = frames_total
    return {
        "frames": f,
        "repeats": repeat,
        "clips": len(clips),
        "tracked_ms_per_frame_cpu": 1000 * totals["track_cpu"] / f,
        "naive_ms_per_frame_cpu": 1000 * totals["naive_cpu"] / f,
        "tracked_fps_cpu": f / totals["track_cpu"],
        "naive_fps_cpu": f / totals["naive_cpu"],
        "speedup_cpu": totals["naive_cpu"] / totals["track_cpu"],
        "tracked_fps_wall": f / totals["track_wall"],
        "naive_fps_wall": f / totals["naive_wall"],
        "speedup_wall": totals["naive_wall"] / totals["track_wall"],
        "realtime_factor_cpu": f / 25.0 / totals["track_cpu"],
        "detector_runs_fraction": detected / f,
        "mean_dev_px": float(allDev.mean()) if allDev.size else None,
        "p95_dev_px": float(np.percentile(allDev, 95)) if allDev.size else None,
        "max_dev_px": float(allDev.max()) if allDev.size else None,
        "per_clip": per_clip,
        "tracker_settings": tracker.settings(),
        "timing_passes": spread,
        "tracked_ms_per_frame_cpu_min": 1000 * min(p["track_cpu"] for p in passes) / f,
        "tracked_ms_per_frame_cpu_max": 1000 * max(p["track_cpu"] for p in passes) / f,
        "naive_ms_per_frame_cpu_min": 1000 * min(p["naive_cpu"] for p in passes) / f,
        "naive_ms_per_frame_cpu_max": 1000 * max(p["naive_cpu"] for p in passes) / f,
        **load,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--clips", type=int, default=12, help="GRID s1 clips, spread over the fixture set")
    ap.add_argument("--fixtures", type=Path, default=fixtures_dir())
    ap.add_argument("--repeat", type=int, default=3, help="timings of each clip per side (the median pass)")
    ap.add_argument("--vox-clips", type=int, default=None, help="VoxCeleb-style clips (default: all)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import datetime as dt

    from run_all import machine
    from timing import RULE, loadavg
    grid = sorted((args.fixtures / "grid" / "s1").glob("*.mpg"))
    if not grid:
        raise SystemExit(f"no GRID fixtures under {args.fixtures}/grid/s1 (set TALKFACE_FIXTURES)")
    step = max(len(grid) // args.clips, 1)
    grid = grid[::step][: args.clips]
    vox = sorted((args.fixtures / "voxceleb_style").glob("*.mp4"))[: args.vox_clips]
    load_before = loadavg()
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result = provenance(
        benchmark="landmarks",
        date=date, machine=machine(), nice=os.nice(0), load_average_before=load_before,
        baseline="naive loop: dlib HOG (upsample 0, best box) + 68-point predictor on every frame",
        timing=f"one process, OMP_NUM_THREADS=1, decoding excluded; cpu = process CPU time; the median of "
               f"{args.repeat} passes over the clips (min and max kept)",
        grid_360x288=run(grid, args.repeat),
        voxceleb_style_224x224=run(vox, args.repeat) if vox else None,
        under_load_rule=RULE,
    )
    result["load_average_after"] = loadavg()
    result["under_load"] = any(result[k]["under_load"] for k in ("grid_360x288", "voxceleb_style_224x224")
                               if result[k])
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "landmarks.json", result)
    g = result["grid_360x288"]
    print(
        f"GRID: tracked {g['tracked_ms_per_frame_cpu']:.2f} ms/frame ({g['tracked_fps_cpu']:.0f} fps), naive "
        f"{g['naive_ms_per_frame_cpu']:.2f} ms/frame, x{g['speedup_cpu']:.2f}; deviation mean "
        f"{g['mean_dev_px']:.2f} px, max {g['max_dev_px']:.2f} px -> {args.out / 'landmarks.json'}"
    )


if __name__ == "__main__":
    main()
