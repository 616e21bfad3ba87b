"""Metric speed, side by side with the tools users would otherwise use, on real GRID fixture frames.

1. CPBD per 256x256 gray frame: talkface's variants (matlab, matlab-legacy-canny, python-cpbd) vs the
   `cpbd` 1.0.7 package (its SciPy import patched here), interleaved in one run, on two frame sets:
   GRID face crops (a fixed central crop of the face region resized to 256x256: the figure of the
   issue's 30x target) and the whole-frame 256x256 crops this benchmark used before.
2. SSIM (Gaussian 11x11, colour) + PSNR per 128x128 frame: talkface batched over a 75-frame clip vs
   scikit-image called frame by frame, interleaved.
3. `talkface evaluate` throughput (frames/s) on prepared GRID clips, 2 workers vs 1, with the
   weight-free metrics (psnr, ssim, cpbd, lmd_mouth, lmd_face, blink_rate).

Every timing of parts 1 and 2 is repeated (``--repeats``, at least 3): the JSON keeps the median
(under the key the figures always had) and the min and max of the repeats, each ratio is the median
of the per-repeat ratios (both sides timed in the same repeat), and ``os.getloadavg()`` is recorded
before and after every repeat, so that a figure taken on a busy machine says so.

Usage: python benchmarks/bench_metrics.py --out benchmarks/results/   (writes metrics.json)
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from timing import write_result  # noqa: E402

from talkface import __version__  # noqa: E402
from talkface.core.media import read_video  # noqa: E402
from talkface.evaluate.metrics._image import to_gray_u8  # noqa: E402
from talkface.evaluate.metrics.cpbd import VARIANTS as CPBD_VARIANTS  # noqa: E402
from talkface.evaluate.metrics.cpbd import cpbd  # noqa: E402
from talkface.evaluate.metrics.psnr import psnr_frames  # noqa: E402
from talkface.evaluate.metrics.ssim import ssim_frames  # noqa: E402
from talkface.utils.fixtures import fixtures_dir  # noqa: E402


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _spread(values: list[float], scale: float = 1.0) -> dict:
    """Median (under ``median``), min and max of the repeats, times ``scale``."""
    v = np.asarray(values, dtype=np.float64) * scale
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def _reference_cpbd():
    import scipy.ndimage

    if not hasattr(scipy.ndimage, "imread"):
        scipy.ndimage.imread = lambda *a, **k: None  # the package imports it; compute() never uses it
    try:
        return importlib.import_module("cpbd")
    except ImportError:
        return None


#: The face region of a GRID s1 frame (360x288): rows 48:224, columns 62:238 (176x176, the speaker's
#: head from hair to chin), resized to 256x256.
FACE_CROP = (slice(48, 224), slice(62, 238))


def grid_face_crops(clips: list[Path], n_crops: int) -> tuple[list[np.ndarray], str]:
    """``n_crops`` gray 256x256 face crops: 2 frames (15 and 50) from each of ``n_crops / 2`` clips
    spread over ``clips``."""
    n_clips = max(1, (n_crops + 1) // 2)
    chosen = clips[:: max(1, len(clips) // n_clips)][:n_clips]
    crops = []
    for clip in chosen:
        video = read_video(clip)
        for i in (15, 50):
            face = video[min(i, len(video) - 1)][FACE_CROP]
            crops.append(to_gray_u8(cv2.resize(face, (256, 256), interpolation=cv2.INTER_CUBIC)))
    source = (
        f"GRID s1: frames 15 and 50 of {len(chosen)} clips spread over the speaker's {len(clips)}; fixed "
        "central crop of the face region (rows 48:224, columns 62:238 of the 360x288 frame, 176x176), "
        "resized to 256x256 (bicubic), talkface gray (BT.601)"
    )
    return crops[:n_crops], source


def grid_whole_frames(clips: list[Path], n_frames: int) -> tuple[list[np.ndarray], str]:
    """The frames this benchmark used before: 3 frames (0, T/2, T-1 rounded) per clip, rows 16:272,
    columns 52:308 (256x256 of the whole frame, no resize)."""
    frames = []
    for clip in clips[:4]:
        video = read_video(clip)
        for i in range(0, len(video), max(1, len(video) // 2)):
            frames.append(to_gray_u8(cv2.resize(video[i][16:272, 52:308], (256, 256))))
    source = (
        "GRID s1 first 4 clips, frames 0, T/2, T-1 of each; rows 16:272, columns 52:308 of the frame "
        "(256x256, most of the frame), talkface gray (BT.601)"
    )
    return frames[:n_frames], source


def _cpbd_once(tools: dict, frames: list[np.ndarray], rounds: int) -> tuple[dict, dict]:
    """One repeat: every round calls every tool on every frame (interleaved), and each (tool, frame)
    keeps its fastest call; the sums over frames (wall and CPU seconds of this process)."""
    best_wall = {k: np.full(len(frames), np.inf) for k in tools}
    best_cpu = {k: np.full(len(frames), np.inf) for k in tools}
    for _ in range(rounds):
        for i, f in enumerate(frames):
            for name, fn in tools.items():
                t, c = time.perf_counter(), time.process_time()
                fn(f)
                best_wall[name][i] = min(best_wall[name][i], time.perf_counter() - t)
                best_cpu[name][i] = min(best_cpu[name][i], time.process_time() - c)
    return {k: float(v.sum()) for k, v in best_wall.items()}, {k: float(v.sum()) for k, v in best_cpu.items()}


def bench_cpbd_frames(frames: list[np.ndarray], source: str, rounds: int, repeats: int) -> dict:
    """CPBD per frame, every talkface variant and the package, measured side by side ``repeats``
    times (the machine is shared: interleaved frame by frame, fastest of ``rounds`` per frame)."""
    ref = _reference_cpbd()
    tools = {v: (lambda f, v=v: cpbd(f, v)) for v in CPBD_VARIANTS}
    if ref is not None:
        tools["cpbd_package"] = ref.compute
    n = len(frames)
    runs = []
    for _ in range(repeats):
        before = _load()
        wall, cpu = _cpbd_once(tools, frames, rounds)
        runs.append({"wall_s": wall, "cpu_s": cpu, "load_before": before, "load_after": _load()})
    out: dict = {
        "frames": n,
        "size": "256x256",
        "frame_source": source,
        "rounds": rounds,
        "repeats": repeats,
        "timing": (
            f"per repeat: each (tool, frame) keeps the fastest of {rounds} interleaved calls, summed over "
            f"frames; ms_per_frame etc. are the median of {repeats} repeats (min and max kept), each "
            "speedup the median of the per-repeat ratios"
        ),
        "load_average_before": runs[0]["load_before"],
        "load_average_after": runs[-1]["load_after"],
        "repeat_load_average": [{"before": r["load_before"], "after": r["load_after"]} for r in runs],
    }
    for name in tools:
        wall = _spread([r["wall_s"][name] for r in runs], 1e3 / n)
        cpu = _spread([r["cpu_s"][name] for r in runs], 1e3 / n)
        out[name] = {
            "ms_per_frame": wall["median"],
            "ms_per_frame_min": wall["min"],
            "ms_per_frame_max": wall["max"],
            "cpu_ms_per_frame": cpu["median"],
            "cpu_ms_per_frame_min": cpu["min"],
            "cpu_ms_per_frame_max": cpu["max"],
        }
    if ref is None:
        out["cpbd_package"] = "not installed (pip install cpbd==1.0.7 --no-deps)"
        return out
    for v in CPBD_VARIANTS:
        for key, field in (("speedup_vs_package", "wall_s"), ("cpu_speedup_vs_package", "cpu_s")):
            ratio = _spread([r[field]["cpbd_package"] / r[field][v] for r in runs])
            out[v][key] = ratio["median"]
            out[v][f"{key}_min"] = ratio["min"]
            out[v][f"{key}_max"] = ratio["max"]
    out["python-cpbd"]["max_abs_difference_to_package"] = max(
        float(abs(cpbd(f, "python-cpbd") - ref.compute(f))) for f in frames
    )
    return out


def bench_cpbd(clips: list[Path], n_crops: int, n_frames: int, rounds: int, repeats: int) -> dict:
    """The face-crop figure at the top level (the keys the figures read), the earlier frames inside."""
    crops, crop_source = grid_face_crops(clips, n_crops)
    out = bench_cpbd_frames(crops, crop_source, rounds, repeats)
    frames, frame_source = grid_whole_frames(clips, n_frames)
    out["whole_frames"] = bench_cpbd_frames(frames, frame_source, rounds, repeats)
    return out


def bench_ssim_psnr(clip: Path, repeats: int) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    video = read_video(clip)
    ref = np.stack([cv2.resize(f[40:248, 76:284], (128, 128), interpolation=cv2.INTER_AREA) for f in video])
    gen = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in ref])

    def ours() -> tuple[np.ndarray, np.ndarray]:
        return ssim_frames(gen, ref, window="gaussian11"), psnr_frames(gen, ref)

    def theirs() -> tuple[np.ndarray, np.ndarray]:
        s, p = [], []
        for g, r in zip(gen, ref, strict=True):
            s.append(
                structural_similarity(
                    r,
                    g,
                    data_range=255,
                    channel_axis=-1,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                )
            )
            p.append(peak_signal_noise_ratio(r, g, data_range=255))
        return np.array(s), np.array(p)

    (s_ours, p_ours), (s_theirs, p_theirs) = ours(), theirs()  # warm-up, and the agreement
    runs = []
    for _ in range(repeats):  # interleaved: each repeat times both sides
        before = _load()
        t = time.perf_counter()
        ours()
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        theirs()
        t_theirs = time.perf_counter() - t
        runs.append({"ours": t_ours, "theirs": t_theirs, "before": before, "after": _load()})
    n = len(ref)
    t_ours = _spread([r["ours"] for r in runs], 1e3 / n)
    t_theirs = _spread([r["theirs"] for r in runs], 1e3 / n)
    speedup = _spread([r["theirs"] / r["ours"] for r in runs])
    return {
        "frames": n,
        "size": "128x128 colour",
        "variant": "ssim gaussian11 + psnr",
        "repeats": repeats,
        "timing": (
            f"one call of each side per repeat (the whole clip), interleaved; the median of {repeats} "
            "repeats (min and max kept); speedup: the median of the per-repeat ratios"
        ),
        "talkface_ms_per_frame": t_ours["median"],
        "talkface_ms_per_frame_min": t_ours["min"],
        "talkface_ms_per_frame_max": t_ours["max"],
        "skimage_ms_per_frame": t_theirs["median"],
        "skimage_ms_per_frame_min": t_theirs["min"],
        "skimage_ms_per_frame_max": t_theirs["max"],
        "speedup": speedup["median"],
        "speedup_min": speedup["min"],
        "speedup_max": speedup["max"],
        "max_abs_difference_ssim": float(np.abs(s_ours - s_theirs).max()),
        "max_abs_difference_psnr_db": float(np.abs(p_ours - p_theirs).max()),
        "load_average_before": runs[0]["before"],
        "load_average_after": runs[-1]["after"],
        "repeat_load_average": [{"before": r["before"], "after": r["after"]} for r in runs],
    }


def bench_evaluate(clips: list[Path], tmp: Path) -> dict:
    from talkface.core.media import read_audio, write_video
    from talkface.evaluate.runner import EvaluateConfig, run_evaluate
    from talkface.prepare.corpora import get_recipe
    from talkface.prepare.run import PrepareConfig, run_prepare
    from talkface.store.dataset_writer import DatasetStore

    names = {c.stem for c in clips}
    grid = fixtures_dir() / "grid"
    sources = [s for s in get_recipe("grid").discover(grid).clips if s.clip_id.split("_")[-1] in names]
    store = DatasetStore(tmp / "prepared")
    run_prepare(sources, store, PrepareConfig(), workers=2)
    manifest = store.read_manifest()
    ids = list(manifest[manifest["status"] == "ok"]["clip_id"])
    gen = tmp / "generated"
    gen.mkdir()
    for cid in ids:
        frames = read_video(store.crop_path(cid))
        write_video(
            gen / f"{cid}.mp4",
            [cv2.GaussianBlur(f, (0, 0), 1.0) for f in frames],
            25.0,
            read_audio(store.crop_path(cid)),
        )
    metrics = ["psnr", "ssim", "cpbd", "lmd_mouth", "lmd_face", "blink_rate"]
    out = {"clips": len(ids), "metrics": metrics}
    for workers in (1, 2):
        cfg = EvaluateConfig(
            gen, store.root, f"w{workers}", tmp / "results", metrics=metrics, workers=workers
        )
        t = time.perf_counter()
        rec = run_evaluate(cfg, echo=lambda *_: None)
        elapsed = time.perf_counter() - t
        out[f"workers{workers}"] = {
            "frames": rec["frames_scored"],
            "seconds": elapsed,
            "frames_per_s": rec["frames_scored"] / elapsed,
        }
    out["speedup_2_vs_1_workers"] = out["workers2"]["frames_per_s"] / out["workers1"]["frames_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cpbd-crops", type=int, default=24, help="GRID face crops (2 per clip)")
    parser.add_argument("--cpbd-frames", type=int, default=8, help="whole-frame 256x256 crops")
    parser.add_argument("--cpbd-rounds", type=int, default=3, help="calls per (tool, frame) in a repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of every timing (at least 3)")
    parser.add_argument("--eval-clips", type=int, default=16)
    parser.add_argument("--only-cpbd", action="store_true", help="run the CPBD comparison only (no JSON)")
    parser.add_argument("--with-evaluate", action="store_true",
                        help="also part 3 (bench_evaluate.py measures issue 22's evaluate figure; make bench "
                             "runs that one)")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    cv2.setNumThreads(1)
    clips = sorted((fixtures_dir() / "grid" / "s1").glob("*.mpg"))
    if not clips:
        sys.exit(f"GRID fixtures not found under {fixtures_dir()} (set TALKFACE_FIXTURES)")
    cpbd_args = (clips, args.cpbd_crops, args.cpbd_frames, args.cpbd_rounds, args.repeats)
    if args.only_cpbd:
        print(bench_cpbd(*cpbd_args))
        return
    load_start = _load()
    result = {
        "benchmark": "metrics",
        "talkface_version": __version__,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "threads": 1,  # OMP_NUM_THREADS=1, cv2.setNumThreads(1)
        "date": time.strftime("%Y-%m-%d"),
        "nice": os.nice(0),
        "load_average_before": load_start,
        "cpbd": bench_cpbd(*cpbd_args),
        "ssim_psnr": bench_ssim_psnr(clips[0], args.repeats),
    }
    print(result["cpbd"], result["ssim_psnr"], flush=True)
    if args.with_evaluate:
        with tempfile.TemporaryDirectory() as tmp:
            result["evaluate"] = bench_evaluate(
                clips[:: max(1, len(clips) // args.eval_clips)][: args.eval_clips], Path(tmp)
            )
        print(result["evaluate"])
    result["load_average_after"] = _load()
    write_result(args.out, "metrics.json", result)


if __name__ == "__main__":
    main()
