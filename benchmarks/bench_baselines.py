"""The weight-free baselines on GRID s1 fixtures: what ``ground-truth`` and ``static-frame`` score.

    python benchmarks/bench_baselines.py --out benchmarks/results/

Runs the commands docs/baselines.md names, in a temporary folder: ``talkface prepare grid <fixtures>
--speakers s1 --limit 12`` (the default speaker-independent protocol puts all 12 s1 clips in
``test``), ``talkface baseline ground-truth`` and ``static-frame`` with their defaults, then scores
both against the reference crops twice: scikit-image's ``peak_signal_noise_ratio`` per frame (mean
over frames, then over clips, with the smallest and largest clip), and ``talkface evaluate`` with
``psnr`` and ``ssim`` (mean and 95% bootstrap interval over clips). The CPU time of each baseline
command (its process and children) is recorded. Writes DIR/baselines.json with the date, machine and
load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

METHODS = ("ground-truth", "static-frame")
N_CLIPS = 12


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def talkface(*args: str) -> float:
    """Run one ``talkface`` command; its CPU seconds (process and children)."""
    exe = Path(sys.executable).parent / "talkface"
    before = _children_cpu()
    out = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"talkface {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return _children_cpu() - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio
    from timing import grid_fixtures, machine_facts, write_result

    from talkface import __version__
    from talkface.core.media import read_video
    from talkface.store.dataset import Dataset
    from talkface.store.results import ResultsStore

    grid = grid_fixtures()
    if grid is None:
        return 0
    load_start = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    methods: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        prepare_cpu = talkface("prepare", "grid", str(grid), "--speakers", "s1", "--limit", str(N_CLIPS),
                               "--out", str(data))
        ds = Dataset.open(data)
        parts = ds.parts()
        ids: list[str] = []
        for method in METHODS:
            gen = tmp / method
            cpu = talkface("baseline", method, "--data", str(data), "--out", str(gen), "--device", "cpu",
                           "--quiet")
            ids = sorted(p.stem for p in gen.glob("*.mp4"))
            per_clip = {}
            for cid in ids:
                fake, real = read_video(gen / f"{cid}.mp4"), read_video(ds.crop_path(cid))
                per_clip[cid] = float(np.mean([peak_signal_noise_ratio(r, f, data_range=255)
                                               for r, f in zip(real, fake, strict=True)]))
            talkface("evaluate", "--generated", str(gen), "--data", str(data), "--method", method,
                     "--out", str(tmp / "results"), "--metrics", "psnr,ssim", "--workers", "1")
            summaries = ResultsStore.open(tmp / "results").metric_summaries(method)
            evaluate = {key: {"mean": s.mean, "ci95": list(s.ci95), "n_clips": s.n_clips}
                        for key, s in summaries.items()}
            values = list(per_clip.values())
            methods[method] = {
                "clips": len(ids),
                "skimage_psnr": {"mean": float(np.mean(values)), "min": float(np.min(values)),
                                 "max": float(np.max(values)), "per_clip": per_clip},
                "evaluate": evaluate,
                "command_cpu_s": round(cpu, 2),
                "command_cpu_s_per_clip": round(cpu / max(1, len(ids)), 3),
            }
            print(method, {k: v for k, v in methods[method].items() if k != "skimage_psnr"},
                  methods[method]["skimage_psnr"]["mean"], flush=True)
    record = {
        "benchmark": "baselines",
        "talkface_version": __version__,
        "date": started,
        "machine": machine_facts(),
        "nice": os.nice(0),
        "load_average_before": load_start,
        "commands": [f"talkface prepare grid <fixtures>/grid --speakers s1 --limit {N_CLIPS} --out data",
                     *(f"talkface baseline {m} --data data --out {m}" for m in METHODS),
                     *(f"talkface evaluate --generated {m} --data data --method {m} --metrics psnr,ssim"
                       for m in METHODS)],
        "protocol": parts.protocol,
        "parts": parts.counts(),
        "clip_ids": ids,
        "crop_size": int(ds.crop_size),
        "prepare_cpu_s": round(prepare_cpu, 1),
        "methods": methods,
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    write_result(args.out, "baselines.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
