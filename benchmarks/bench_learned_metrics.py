"""What the learned metrics cost on CPU: LPIPS (AlexNet, VGG16), dlib's face descriptor, SyncNet.

    python benchmarks/bench_learned_metrics.py --out benchmarks/results/

One torch thread (and one OpenCV thread), each item timed after one warm-up call; the figure kept is
the median of ``--repeats`` calls (at least 3; min and max kept, benchmarks/timing.py), in CPU time (the
process's user + system time: on a shared machine the least disturbed number) and in wall time beside
it, with the load average before and after each and whether it was measured under load:

- LPIPS ``alex`` and ``vgg`` on one 128x128 pair (two GRID s1 crops' worth of pixels: frames of the
  first s1 clip resized), with the real weights of ``../shared/fixtures/reference/lpips``;
- LPIPS ``alex`` on the five 512x384 TID2013 pairs of ``reference/iqa_pairs`` (one call, batch 16);
- dlib's 128-d descriptor (``identity_dlib``'s model) on one face: chip from the 68 points + network;
- SyncNet v2 on one 5-frame window, both streams (random weights: the cost does not depend on them),
  and the windows of a 75-frame GRID clip (70) at that rate.

No other tool runs beside them here (``lpips``, ``insightface`` and ``syncnet_python`` cannot be
installed next to this environment's CPU torch), so there is no ratio. Writes DIR/learned_metrics.json
with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def timed(fn: Callable[[], object], repeats: int) -> dict:
    """One warm-up call, then ``repeats`` timed calls (benchmarks/timing.py): the median in CPU and in
    wall time, in ms, min and max kept, the load average before and after and the under-load verdict."""
    from timing import measure

    t = measure(fn, repeats, warmup=1, digits=6)
    ms = {f"{clock}_ms{suffix}": round(1e3 * t[f"{prefix}{stat}_s"], 2)
          for clock, prefix in (("cpu", "cpu_"), ("wall", ""))
          for suffix, stat in (("", "median"), ("_min", "min"), ("_max", "max"))}
    return {**ms, "repeats": repeats,
            "cpu_ms_all": [round(1e3 * v, 2) for v in t["cpu_runs_s"]],
            "wall_ms_all": [round(1e3 * v, 2) for v in t["runs_s"]],
            **{k: t[k] for k in ("load_before", "load_after", "others_cpu_share", "under_load")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import cv2
    import numpy as np
    import torch
    from timing import RULE, machine_facts, write_result

    from talkface import __version__
    from talkface.core.landmarks import get_landmark_backend
    from talkface.core.media import read_video
    from talkface.evaluate.metrics.identity import DlibDescriptor
    from talkface.evaluate.metrics.lpips import lpips
    from talkface.evaluate.metrics.syncnet import SyncNet
    from talkface.utils.fixtures import fixtures_dir

    ref = fixtures_dir() / "reference"
    grid = fixtures_dir() / "grid" / "s1"
    if not (ref / "lpips").is_dir() or not grid.is_dir():
        print(f"skipped: fixtures not found under {fixtures_dir()} (set TALKFACE_FIXTURES)")
        return 0
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    load_start = [round(v, 2) for v in os.getloadavg()]
    t0, c0 = time.perf_counter(), time.process_time()

    video = read_video(sorted(grid.glob("*.mpg"))[0])
    small = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in video[[0, 40]]])
    weights = {net: (ref / "lpips" / f"{'alexnet' if net == 'alex' else 'vgg16'}_features.pth",
                     ref / "lpips" / f"{net}.pth") for net in ("alex", "vgg")}

    def lpips_pair(net: str) -> Callable[[], object]:
        backbone, heads = weights[net]
        return lambda: lpips(small[:1], small[1:], net=net, backbone_weights=backbone, lpips_weights=heads)

    items: dict[str, dict] = {}
    items["lpips_alex_128"] = {"what": "LPIPS AlexNet, one 128x128 pair (real weights)",
                               **timed(lpips_pair("alex"), args.repeats)}
    items["lpips_vgg_128"] = {"what": "LPIPS VGG16, one 128x128 pair (real weights)",
                              **timed(lpips_pair("vgg"), args.repeats)}
    print(items, flush=True)

    pairs = ref / "iqa_pairs"
    names = sorted(p.name for p in (pairs / "ref").glob("*.bmp"))
    read = lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)  # noqa: E731
    a = np.stack([read(pairs / "ref" / n) for n in names])
    b = np.stack([read(pairs / "dist" / n) for n in names])
    backbone, heads = weights["alex"]
    items["lpips_alex_tid2013"] = {
        "what": f"LPIPS AlexNet, the {len(names)} TID2013 pairs at {a.shape[2]}x{a.shape[1]} (real weights), "
                "one call", "pairs": len(names),
        **timed(lambda: lpips(a, b, net="alex", backbone_weights=backbone, lpips_weights=heads),
                args.repeats)}
    print(items["lpips_alex_tid2013"], flush=True)

    backend = get_landmark_backend("dlib")
    points = backend.detect(video[0])
    descriptor = DlibDescriptor()
    items["dlib_descriptor"] = {
        "what": f"dlib face descriptor, one face ({video.shape[2]}x{video.shape[1]} GRID frame: 150x150 chip "
                "from the 68 points + the ResNet)",
        **timed(lambda: descriptor.embed_images([video[0]], [points]), args.repeats)}
    print(items["dlib_descriptor"], flush=True)

    torch.manual_seed(0)
    net = SyncNet().eval()
    lip = torch.rand(1, 3, 5, 224, 224) * 255
    aud = torch.randn(1, 1, 13, 20)

    def syncnet_window() -> None:
        with torch.inference_mode():
            net.forward_lip(lip)
            net.forward_aud(aud)

    items["syncnet_window"] = {
        "what": "SyncNet v2, one 5-frame 224x224 window, both streams (random weights)",
        **timed(syncnet_window, args.repeats)}
    windows = 75 - 5
    items["syncnet_window"]["grid_clip_windows"] = windows
    items["syncnet_window"]["grid_clip_cpu_s"] = round(windows * items["syncnet_window"]["cpu_ms"] / 1e3, 1)
    print(items["syncnet_window"], flush=True)

    record = {
        "benchmark": "learned_metrics",
        "talkface_version": __version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(torch=torch.__version__),
        "threads": torch.get_num_threads(),
        "nice": os.nice(0),
        "load_average_before": load_start,
        "timing": f"median of {args.repeats} calls after one warm-up (min and max kept); CPU time (user + "
                  "system) and wall",
        "under_load": any(it.get("under_load") for it in items.values()),
        "under_load_rule": RULE,
        "items": items,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    write_result(args.out, "learned_metrics.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
