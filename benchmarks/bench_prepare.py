"""Prepare throughput and memory on the GRID fixtures, beside the naive per-frame dlib loop.

Measures, in one run:
- talkface prepare (decode, landmarks with detect+track, smoothing, alignment, logmel features, crops
  encoded as H.264 with audio) on N s1 clips with 1 and 2 worker processes: frames/s, clips/s, x real time
  per core; peak RSS of one worker process;
- the naive loop users write: decode, dlib HOG detection + 68-point prediction on every frame (landmarks
  only, nothing written), on the same clips;
- landmark agreement between talkface's tracker and the per-frame loop (mean/max px at 360x288);
- peak RSS on a 3 s clip and on a 30 s clip (the same clip looped), to show memory is flat in length.

Usage: python benchmarks/bench_prepare.py --out benchmarks/results [--clips 24]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from talkface.utils.fixtures import fixtures_dir

WORKER = r"""
import json, resource, sys, time
from pathlib import Path
from talkface.preprocess.corpora import get_recipe
from talkface.preprocess.corpora.base import ClipSource
from talkface.preprocess.pipeline import PrepareConfig, run_prepare
from talkface.preprocess.store import DatasetStore
args = json.loads(sys.argv[1])
if args.get("video"):
    sources = [ClipSource(clip_id="long", corpus="bench", speaker="x", split="train",
                          source_video=Path(args["video"]))]
else:
    ids = set(args["ids"])
    sources = [c for c in get_recipe("grid").discover(args["root"]).clips if c.clip_id in ids]
def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
t0, c0 = time.perf_counter(), cpu()
s = run_prepare(sources, DatasetStore(args["out"]), PrepareConfig(), workers=args["workers"])
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "cpu_seconds": cpu() - c0, "frames": s.frames, "clips": s.prepared,
                  "statuses": s.statuses,
                  "maxrss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "maxrss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run_talkface(args: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def naive_loop(videos: list[Path]) -> tuple[float, int, list[np.ndarray]]:
    """What users write: HOG detection + 68 points on every decoded frame."""
    import dlib

    from talkface.preprocess import media
    from talkface.preprocess.landmarks.dlib_models import dlib_model_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_68")))
    results, frames = [], 0
    t0 = time.perf_counter()
    for video in videos:
        pts = []
        for frame in media.iter_frames(video):
            frames += 1
            boxes, scores, _ = detector.run(frame, 0, 0)
            if not boxes:
                pts.append(np.full((68, 2), np.nan, np.float32))
                continue
            shape = predictor(frame, boxes[int(np.argmax(scores))])
            pts.append(np.array([(p.x, p.y) for p in shape.parts()], np.float32))
        results.append(np.stack(pts))
    return time.perf_counter() - t0, frames, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--clips", type=int, default=24)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    root = fixtures_dir() / "grid"
    from talkface.preprocess import media
    from talkface.preprocess.corpora import get_recipe
    from talkface.preprocess.landmarks import get_landmark_backend

    clips = [c for c in get_recipe("grid").discover(root).clips if c.speaker == "s1"][: args.clips]
    ids = [c.clip_id for c in clips]
    result: dict = {"clips": len(clips), "source": "GRID s1 fixtures, 360x288, 25 fps, 75 frames"}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            r = run_talkface({"root": str(root), "ids": ids, "out": f"{tmp}/w{workers}", "workers": workers})
            real_time = r["frames"] / 25.0
            result[f"talkface_{workers}_workers"] = {
                "seconds": round(r["seconds"], 2),
                "frames_per_s": round(r["frames"] / r["seconds"], 1),
                "clips_per_s": round(r["clips"] / r["seconds"], 2),
                "cpu_seconds": round(r["cpu_seconds"], 2),
                "cpu_s_per_clip": round(r["cpu_seconds"] / max(r["clips"], 1), 3),
                # real time per core from CPU time actually used (decode/encode use extra threads)
                "x_real_time_per_cpu_second": round(real_time / r["cpu_seconds"], 2),
                "x_real_time_per_core_wall": round(real_time / r["seconds"] / workers, 2),
                "peak_rss_worker_mib": round(r["maxrss_self_mib"] if workers == 1 else
                                             r["maxrss_children_mib"], 1),
                "statuses": r["statuses"],
            }
        naive_clips = clips[: max(4, len(clips) // 2)]
        c0 = time.process_time()
        seconds, frames, naive_pts = naive_loop([c.source_video for c in naive_clips])
        naive_cpu = time.process_time() - c0
        result["naive_per_frame_loop_1_core"] = {
            "clips": len(naive_clips),
            "frames_per_s": round(frames / seconds, 1),
            "cpu_s_per_clip": round(naive_cpu / len(naive_clips), 3),
            "x_real_time_per_cpu_second": round(frames / 25.0 / naive_cpu, 2),
        }
        t1 = result["talkface_1_workers"]["frames_per_s"]
        naive = result["naive_per_frame_loop_1_core"]["frames_per_s"]
        result["speedup_vs_naive_1_core_wall"] = round(t1 / naive, 2)
        naive_cpu_clip = result["naive_per_frame_loop_1_core"]["cpu_s_per_clip"]
        ours_cpu_clip = result["talkface_1_workers"]["cpu_s_per_clip"]
        result["speedup_vs_naive_cpu"] = round(naive_cpu_clip / ours_cpu_clip, 2)

        backend = get_landmark_backend("dlib")
        diffs = []
        for clip, ref in zip(naive_clips, naive_pts, strict=True):
            tracked = backend.track(media.iter_frames(clip.source_video)).points
            diffs.append(np.linalg.norm(tracked - ref, axis=2))
        d = np.concatenate(diffs)
        result["tracker_vs_per_frame_px"] = {"mean": round(float(np.nanmean(d)), 3),
                                             "p95": round(float(np.nanpercentile(d, 95)), 3),
                                             "max": round(float(np.nanmax(d)), 3)}

        # Memory flat in clip length: one 3 s clip vs the same clip looped to 30 s.
        frames_3s = media.read_video(clips[0].source_video)
        audio_3s = media.read_audio(clips[0].source_video)
        long_video = Path(tmp) / "long.mp4"
        media.write_video(long_video, (f for _ in range(10) for f in frames_3s), 25.0, np.tile(audio_3s, 10))
        short_video = Path(tmp) / "short.mp4"
        media.write_video(short_video, frames_3s, 25.0, audio_3s)
        mem = {}
        for name, video in (("3s", short_video), ("30s", long_video)):
            r = run_talkface({"video": str(video), "out": f"{tmp}/mem_{name}", "workers": 1})
            mem[name] = round(r["maxrss_self_mib"], 1)
        result["peak_rss_mib_by_clip_length"] = mem
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prepare.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
