"""``talkface evaluate`` on 26 prepared GRID s1 clips: 1 worker against 2 (issue 22), and the
reference-landmark cache.

On N prepared GRID s1 fixture clips (128 px crops, 75 frames each; N = 26 by default) a generated
method, ``blur`` (a Gaussian-blurred copy of each crop), is scored with the core metrics (psnr, ssim,
cpbd, lmd_mouth, lmd_face, blink_rate, blink_duration; dlib landmarks on both sides) as a user runs it:
every measurement is a fresh Python process calling ``run_evaluate`` (what ``talkface evaluate`` calls;
with 2 workers the calling process scores clips beside one spawned worker), timed from outside around
the whole process, interpreter start and imports included. The figures:

- the headline (issue 22): frames/s with 1 worker and with 2, without the reference-landmark cache
  (landmarks detected on both sides, all the work a first evaluation does), and their ratio; targets:
  2 workers >= 1.7x one worker's speed and >= 150 frames/s;
- the cache: the same runs reading the reference landmarks that a first method (``static-frame``,
  reference frame 0 held) left in the cache; cached rows are checked equal to uncached ones; and the
  step the cache replaces timed alone, in this process: dlib tracking of one clip's reference frames
  against reading its cache entry (key included: the crop's SHA-256). ``--skip-cache`` leaves these out.

The cases are interleaved (each round runs every case once, the order rotated) and repeated
(``--repeat``, at least 3): each figure is the median, with min and max and every run kept, the load
average before and after, the other processes' CPU share and whether it was measured under load
(``benchmarks/timing.py``).

Usage: nice -n 19 python benchmarks/bench_evaluate.py --out benchmarks/results [--clips 26] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ["psnr", "ssim", "cpbd", "lmd_mouth", "lmd_face", "blink_rate", "blink_duration"]
TARGET_SPEEDUP, TARGET_FPS = 1.7, 150.0  # issue 22: 2 workers against 1, and frames/s with 2 workers

WORKER = r"""
import json, sys, time
t_start = time.perf_counter()
from pathlib import Path
from talkface.evaluate.runner import EvaluateConfig, run_evaluate
if __name__ == "__main__":  # the pool's spawned workers import this file too
    args = json.loads(sys.argv[1])
    cfg = EvaluateConfig(Path(args["generated"]), Path(args["data"]), args["method"], Path(args["out"]),
                         metrics=args["metrics"], workers=args["workers"], landmark_cache=args["cache"])
    t0 = time.perf_counter()
    rec = run_evaluate(cfg, echo=lambda *_: None)
    print(json.dumps({"run_evaluate_s": time.perf_counter() - t0, "import_s": t0 - t_start,
                      "frames": rec["frames_scored"], "cache": rec["reference_landmark_cache"]}))
"""


def evaluate(script: Path, **args) -> dict:
    """One fresh process running ``run_evaluate``; its own report (frames, cache, inner seconds)."""
    out = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"evaluate failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_inputs(tmp: Path, n_clips: int) -> tuple[Path, dict[str, Path], list[str]]:
    import cv2

    from talkface.core.media import read_audio, read_video, write_video
    from talkface.prepare.corpora import get_recipe
    from talkface.prepare.run import PrepareConfig, run_prepare
    from talkface.store.dataset import Dataset
    from talkface.store.dataset_writer import DatasetStore
    from talkface.utils.fixtures import fixtures_dir

    clips = sorted((c for c in get_recipe("grid").discover(fixtures_dir() / "grid", split="seen").clips
                    if c.speaker == "s1"), key=lambda c: c.clip_id)
    chosen = clips[:: max(1, len(clips) // n_clips)][:n_clips]
    run_prepare(chosen, DatasetStore(tmp / "data"), PrepareConfig(), workers=2)
    ds = Dataset.open(tmp / "data")
    ids = [r.clip_id for r in ds.records(usable_only=True)]
    dirs = {"static-frame": tmp / "static-frame", "blur": tmp / "blur"}
    for d in dirs.values():
        d.mkdir()
    for cid in ids:
        frames, audio = read_video(ds.crop_path(cid)), read_audio(ds.crop_path(cid))
        write_video(dirs["static-frame"] / f"{cid}.mp4", [frames[0]] * len(frames), 25.0, audio)
        write_video(dirs["blur"] / f"{cid}.mp4", [cv2.GaussianBlur(f, (0, 0), 1.5) for f in frames], 25.0,
                    audio)
    return tmp / "data", dirs, ids


def reference_step(data: Path, ids: list[str], cache_dir: Path, repeat: int) -> dict:
    """Per clip: tracking the reference frames (what a miss costs) vs reading the cached entry; the
    median of ``repeat`` calls per clip, summed over clips."""
    import numpy as np
    from timing import measure, window

    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video
    from talkface.evaluate.reference_cache import ReferenceLandmarkCache
    from talkface.store.dataset import Dataset

    ds = Dataset.open(data)
    backend = get_landmark_backend("dlib", detector="hog")
    cache = ReferenceLandmarkCache(cache_dir, backend.settings())
    track, read = [], []
    win = window()
    for cid in ids:
        crop = ds.crop_path(cid)
        frames = read_video(crop)
        t = measure(lambda: backend.track(iter(frames)).points, repeat, keep_value=True)  # noqa: B023
        points = t.pop("value")
        key = cache.key_json(crop, len(frames), frames.shape[1:3])
        cache.save(key, points)
        r = measure(lambda: cache.load(cache.key_json(crop, len(frames), frames.shape[1:3])),  # noqa: B023
                    repeat, keep_value=True)
        assert np.array_equal(r.pop("value"), points, equal_nan=True)
        track.append(t)
        read.append(r)
    n = len(ids)
    track_wall, read_wall = sum(t["median_s"] for t in track), sum(r["median_s"] for r in read)
    return {
        "clips": n,
        "timing": f"per clip the median of {repeat} calls; the mean over clips",
        "track_ms_per_clip_wall": round(track_wall / n * 1e3, 1),
        "track_ms_per_clip_cpu": round(sum(t["cpu_median_s"] for t in track) / n * 1e3, 1),
        "cache_read_ms_per_clip_wall": round(read_wall / n * 1e3, 2),
        "cache_read_ms_per_clip_cpu": round(sum(r["cpu_median_s"] for r in read) / n * 1e3, 2),
        "speedup_wall": round(track_wall / max(read_wall, 1e-9), 1),
        **win.close(),
    }


def case_name(cache: bool, workers: int) -> str:
    return f"{'cache' if cache else 'no_cache'}_{workers}_{'workers' if workers > 1 else 'worker'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--clips", type=int, default=26)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (the median is kept)")
    parser.add_argument("--skip-cache", action="store_true", help="only the 1 vs 2 workers headline")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from run_all import machine
    from timing import RULE, interleaved, loadavg, window

    from talkface import __version__
    from talkface.store.results import ResultsStore

    started = time.strftime("%Y-%m-%d %H:%M")
    load_start = loadavg()
    cpu_start = os.times()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "evaluate_once.py"
        script.write_text(WORKER)
        data, dirs, ids = make_inputs(tmp, args.clips)
        common = {"data": str(data), "metrics": METRICS}
        cached_out = tmp / "results"
        first = None
        if not args.skip_cache:  # the first method fills the cache
            w = window()
            t0 = time.perf_counter()
            first = evaluate(script, generated=str(dirs["static-frame"]), method="static-frame",
                             out=str(cached_out), workers=1, cache=True, **common)
            first["process_wall_s"] = time.perf_counter() - t0
            first.update(w.close())
        cases = [(False, 1), (False, 2)] + ([] if args.skip_cache else [(True, 1), (True, 2)])
        reports: dict[str, dict] = {}
        counter = iter(range(10**6))

        def run_case(cache: bool, workers: int):
            name = case_name(cache, workers)
            out = cached_out if cache else tmp / f"plain_{name}_{next(counter)}"
            r = evaluate(script, generated=str(dirs["blur"]), method="blur", out=str(out),
                         workers=workers, cache=cache, **common)
            if cache:
                assert r["cache"]["hits"] == len(ids) and r["cache"]["detected"] == 0, r["cache"]
            reports.setdefault(name, []).append(r)
            print(name, json.dumps(r), flush=True)
            return r

        timings = interleaved({case_name(c, w): (lambda c=c, w=w: run_case(c, w)) for c, w in cases},
                              args.repeat, digits=3)
        identical = None
        if not args.skip_cache:  # the cache changes no value: the last cached run's rows equal an uncached
            def rows(folder: Path):
                return ResultsStore(folder).read("blur").sort_values(["clip_id", "metric"]).reset_index(
                    drop=True)

            a, b = rows(cached_out), rows(sorted(tmp.glob("plain_no_cache_1_worker_*"))[0])
            identical = bool(a.drop(columns=["per_frame"]).equals(b.drop(columns=["per_frame"]))
                             and all((x == y).all() for x, y in zip(a["per_frame"], b["per_frame"],
                                                                     strict=True)))
            step = reference_step(data, ids, tmp / "step_cache", args.repeat)
            print("reference step", json.dumps(step), flush=True)
    frames = reports["no_cache_1_worker"][0]["frames"]

    def figure(name: str) -> dict:
        t, rs = timings[name], reports[name]
        return {
            "frames_per_s_median": round(frames / t["median_s"], 1),
            "frames_per_s_min": round(frames / t["max_s"], 1),
            "frames_per_s_max": round(frames / t["min_s"], 1),
            "wall_s_median": t["median_s"], "wall_s_min": t["min_s"], "wall_s_max": t["max_s"],
            "wall_s_all": t["runs_s"],
            "cpu_s_median": t["cpu_median_s"], "cpu_s_all": t["cpu_runs_s"],
            "run_evaluate_s_all": [round(r["run_evaluate_s"], 3) for r in rs],
            "import_s_all": [round(r["import_s"], 3) for r in rs],
            "load_1min_before_runs": t["load_1min_before_runs"],
        }

    one, two = figure("no_cache_1_worker"), figure("no_cache_2_workers")
    shared = timings["no_cache_1_worker"]
    speedup = round(one["wall_s_median"] / two["wall_s_median"], 2)
    workers = {
        "what": "frames/s of a whole fresh process (interpreter start, imports, run_evaluate), no cache: "
                "landmarks detected on both sides",
        "clips": len(ids), "frames": frames, "metrics": METRICS, "repeats": args.repeat,
        "timing": f"median of {args.repeat} fresh processes per case, the cases interleaved; min and max "
                  "kept",
        "workers1": one, "workers2": two,
        "speedup_2_vs_1_workers": speedup,
        # the ratio's spread: slowest 2-worker run against fastest 1-worker run, and the reverse
        "speedup_min": round(one["wall_s_min"] / two["wall_s_max"], 2),
        "speedup_max": round(one["wall_s_max"] / two["wall_s_min"], 2),
        "target_speedup": TARGET_SPEEDUP, "target_frames_per_s_2_workers": TARGET_FPS,
        "load_before": shared["load_before"], "load_after": shared["load_after"],
        "others_cpu_share": shared["others_cpu_share"], "under_load": shared["under_load"],
        "under_load_rule": RULE,
    }
    result = {
        "benchmark": "evaluate: 1 vs 2 workers (issue 22) and the reference-landmark cache",
        "talkface_version": __version__,
        "machine": machine(),
        "cores": os.cpu_count(),
        "date": started,
        "nice": os.nice(0),
        "load_average_at_start": load_start,
        "load_average_at_end": loadavg(),
        "clips": len(ids),
        "frames": frames,
        "metrics": METRICS,
        "source": "GRID s1 fixtures prepared to 128x128 crops, 75 frames each; method: blurred copy",
        "repeats": args.repeat,
        "workers": workers,
        "under_load": workers["under_load"],
        "under_load_rule": RULE,
    }
    if not args.skip_cache:
        result["first_method_cache_cold_1_worker"] = {
            "wall_s": round(first["process_wall_s"], 2), "run_evaluate_s": round(first["run_evaluate_s"], 2),
            "cache": {k: v for k, v in first["cache"].items() if k != "folder"},
            **{k: first[k] for k in ("load_before", "load_after", "others_cpu_share", "under_load")}}
        for cache, w in cases:
            name = case_name(cache, w)
            result[f"second_method_{name}"] = figure(name)
        r = {case_name(c, w): result[f"second_method_{case_name(c, w)}"] for c, w in cases}

        def ratio(slow: str, fast: str, key: str) -> float:
            return round(r[slow][key] / r[fast][key], 2)

        result["ratios"] = {
            "cache_speedup_1_worker_wall": ratio("no_cache_1_worker", "cache_1_worker", "wall_s_median"),
            "cache_speedup_1_worker_cpu": ratio("no_cache_1_worker", "cache_1_worker", "cpu_s_median"),
            "cache_speedup_2_workers_wall": ratio("no_cache_2_workers", "cache_2_workers", "wall_s_median"),
            "cache_speedup_2_workers_cpu": ratio("no_cache_2_workers", "cache_2_workers", "cpu_s_median"),
            "workers_2_vs_1_no_cache_wall": ratio("no_cache_1_worker", "no_cache_2_workers", "wall_s_median"),
            "workers_2_vs_1_cache_wall": ratio("cache_1_worker", "cache_2_workers", "wall_s_median"),
        }
        result["cache_under_load"] = any(timings[n]["under_load"] for n in timings)
        result["under_load"] = result["under_load"] or result["cache_under_load"]
        result["reference_landmarks_step_alone"] = step
        result["cached_rows_equal_uncached"] = identical
    end = os.times()
    result["benchmark_cpu_s_total"] = round(end.user + end.system + end.children_user + end.children_system
                                            - cpu_start.user - cpu_start.system - cpu_start.children_user
                                            - cpu_start.children_system, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if identical is False:
        sys.exit("cached rows differ from uncached rows")


if __name__ == "__main__":
    main()
