"""``talkface evaluate`` of a second method with and without the reference-landmark cache, 1 vs 2 workers.

On N prepared GRID s1 fixture clips (128 px crops) two methods are scored with the core metrics (psnr,
ssim, cpbd, lmd_mouth, lmd_face, blink_rate; dlib landmarks on both sides): ``static-frame`` (reference
frame 0 held) first, which fills the cache, then ``blur`` (a Gaussian-blurred copy), the "second
method", measured

- without the cache (``landmark_cache=False``: landmarks detected on both sides, as before the cache),
- with the cache the first method left (reference landmarks read, generated ones detected),

each with 1 and 2 worker processes. Every measurement is a fresh Python process (as a CLI call is),
timed around ``run_evaluate``: wall seconds and CPU seconds of the process and its workers. The
measurements are interleaved and repeated; the fastest wall time of each is kept (the machine is shared
with other jobs; the load average before each is recorded). The cached and uncached rows are checked
equal. The step the cache replaces is also timed alone, in this process: dlib tracking of one clip's
reference frames against reading its cache entry (key included: the crop's SHA-256).

Usage: nice -n 19 python benchmarks/bench_evaluate.py --out benchmarks/results [--clips 6] [--repeat 3]
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
METRICS = ["psnr", "ssim", "cpbd", "lmd_mouth", "lmd_face", "blink_rate"]

WORKER = r"""
import json, resource, sys, time
from pathlib import Path
from talkface.evaluate.runner import EvaluateConfig, run_evaluate
def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
if __name__ == "__main__":  # the pool's spawned workers import this file too
    args = json.loads(sys.argv[1])
    cfg = EvaluateConfig(Path(args["generated"]), Path(args["data"]), args["method"], Path(args["out"]),
                         metrics=args["metrics"], workers=args["workers"], landmark_cache=args["cache"])
    t0, c0 = time.perf_counter(), cpu()
    rec = run_evaluate(cfg, echo=lambda *_: None)
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": cpu() - c0,
                      "frames": rec["frames_scored"], "cache": rec["reference_landmark_cache"]}))
"""


def evaluate(script: Path, **args) -> dict:
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, str(script), json.dumps(args)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"evaluate failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["load_1min_before"] = round(load, 2)
    return r


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


def _best(fn, repeat: int) -> tuple[tuple[float, float], object]:
    """(fastest wall s, its CPU s) of ``repeat`` calls, and the last result."""
    best, out = (float("inf"), float("inf")), None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best, out


def reference_step(data: Path, ids: list[str], cache_dir: Path, repeat: int) -> dict:
    """Per clip: tracking the reference frames (what a miss costs) vs reading the cached entry."""
    import numpy as np

    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video
    from talkface.evaluate.reference_cache import ReferenceLandmarkCache
    from talkface.store.dataset import Dataset

    ds = Dataset.open(data)
    backend = get_landmark_backend("dlib", detector="hog")
    cache = ReferenceLandmarkCache(cache_dir, backend.settings())
    track, read = [], []
    for cid in ids:
        crop = ds.crop_path(cid)
        frames = read_video(crop)
        t, points = _best(lambda: backend.track(iter(frames)).points, repeat)  # noqa: B023
        key = cache.key_json(crop, len(frames), frames.shape[1:3])
        cache.save(key, points)
        r, cached = _best(lambda: cache.load(cache.key_json(crop, len(frames), frames.shape[1:3])),  # noqa: B023
                          repeat)
        assert np.array_equal(cached, points, equal_nan=True)
        track.append(t)
        read.append(r)
    n = len(ids)
    return {
        "clips": n,
        "track_ms_per_clip_wall": round(sum(t[0] for t in track) / n * 1e3, 1),
        "track_ms_per_clip_cpu": round(sum(t[1] for t in track) / n * 1e3, 1),
        "cache_read_ms_per_clip_wall": round(sum(r[0] for r in read) / n * 1e3, 2),
        "cache_read_ms_per_clip_cpu": round(sum(r[1] for r in read) / n * 1e3, 2),
        "speedup_wall": round(sum(t[0] for t in track) / max(sum(r[0] for r in read), 1e-9), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from run_all import machine

    from talkface import __version__
    from talkface.store.results import ResultsStore

    started = time.strftime("%Y-%m-%d %H:%M")
    load_start = os.getloadavg()
    cpu_start = os.times()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "evaluate_once.py"
        script.write_text(WORKER)
        data, dirs, ids = make_inputs(tmp, args.clips)
        common = {"data": str(data), "metrics": METRICS}
        cached_out = tmp / "results"
        first = evaluate(script, generated=str(dirs["static-frame"]), method="static-frame",
                         out=str(cached_out), workers=1, cache=True, **common)
        cases = {
            f"{'cache' if cache else 'no_cache'}_{workers}_{'workers' if workers > 1 else 'worker'}":
            (cache, workers)
            for workers in (1, 2)
            for cache in (False, True)
        }
        runs: dict[str, list[dict]] = {name: [] for name in cases}
        for i in range(args.repeat):
            for name, (cache, workers) in cases.items():
                out = cached_out if cache else tmp / f"plain_{name}_{i}"
                r = evaluate(script, generated=str(dirs["blur"]), method="blur", out=str(out),
                             workers=workers, cache=cache, **common)
                if cache:
                    assert r["cache"]["hits"] == len(ids) and r["cache"]["detected"] == 0, r["cache"]
                runs[name].append(r)
                print(name, i, json.dumps(r), flush=True)
        # the cache changes no value: the rows of the last cached run equal an uncached run's
        a = ResultsStore(cached_out).read("blur").sort_values(["clip_id", "metric"]).reset_index(drop=True)
        b = ResultsStore(tmp / "plain_no_cache_1_worker_0").read("blur")
        b = b.sort_values(["clip_id", "metric"]).reset_index(drop=True)
        identical = bool(a.drop(columns=["per_frame"]).equals(b.drop(columns=["per_frame"]))
                         and all((x == y).all() for x, y in zip(a["per_frame"], b["per_frame"], strict=True)))
        step = reference_step(data, ids, tmp / "step_cache", args.repeat)
        print("reference step", json.dumps(step), flush=True)
    frames = first["frames"]

    def best(name: str) -> dict:
        rs = runs[name]
        fastest = min(rs, key=lambda r: r["seconds"])
        return {
            "wall_s_best": round(fastest["seconds"], 2),
            "cpu_s_of_best": round(fastest["cpu_seconds"], 2),
            "cpu_s_min": round(min(r["cpu_seconds"] for r in rs), 2),
            "wall_s_all": [round(r["seconds"], 2) for r in rs],
            "cpu_s_all": [round(r["cpu_seconds"], 2) for r in rs],
            "load_1min_before": [r["load_1min_before"] for r in rs],
            "frames_per_s_best": round(frames / fastest["seconds"], 1),
        }

    result = {
        "benchmark": "evaluate: reference-landmark cache and workers",
        "talkface_version": __version__,
        "machine": machine(),
        "date": started,
        "nice": os.nice(0),
        "load_average_at_start": [round(v, 2) for v in load_start],
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "clips": len(ids),
        "frames": frames,
        "metrics": METRICS,
        "source": "GRID s1 fixtures prepared to 128x128 crops, 75 frames each; second method: blurred copy",
        "repeats": args.repeat,
        "first_method_cache_cold_1_worker": {
            "wall_s": round(first["seconds"], 2),
            "cpu_s": round(first["cpu_seconds"], 2),
            "cache": {k: v for k, v in first["cache"].items() if k != "folder"},
        },
    }
    for name in cases:
        result[f"second_method_{name}"] = best(name)
    r = {name: result[f"second_method_{name}"] for name in cases}
    def ratio(slow: str, fast: str, key: str) -> float:
        return round(r[slow][key] / r[fast][key], 2)

    result["ratios"] = {
        "cache_speedup_1_worker_wall": ratio("no_cache_1_worker", "cache_1_worker", "wall_s_best"),
        "cache_speedup_1_worker_cpu": ratio("no_cache_1_worker", "cache_1_worker", "cpu_s_min"),
        "cache_speedup_2_workers_wall": ratio("no_cache_2_workers", "cache_2_workers", "wall_s_best"),
        "cache_speedup_2_workers_cpu": ratio("no_cache_2_workers", "cache_2_workers", "cpu_s_min"),
        "workers_2_vs_1_no_cache_wall": ratio("no_cache_1_worker", "no_cache_2_workers", "wall_s_best"),
        "workers_2_vs_1_cache_wall": ratio("cache_1_worker", "cache_2_workers", "wall_s_best"),
    }
    result["reference_landmarks_step_alone"] = step
    result["cached_rows_equal_uncached"] = identical
    end = os.times()
    result["benchmark_cpu_s_total"] = round(end.user + end.system + end.children_user + end.children_system
                                            - cpu_start.user - cpu_start.system - cpu_start.children_user
                                            - cpu_start.children_system, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not identical:
        sys.exit("cached rows differ from uncached rows")


if __name__ == "__main__":
    main()
