"""The DeepSpeech backend's two LSTM paths on one clip on CPU, and the forward's activation memory.

    python benchmarks/bench_deepspeech_lstm.py --out benchmarks/results/

``DeepSpeechAcoustic.lstm_impl``: "loop" (each direction's input projections as one GEMM, then the
recurrence step by step; "auto" picked it for one clip on CPU until this benchmark measured "torch"
faster there) against "torch" (``nn.LSTM``, what "auto" runs now), on the
same full-size random weights (``bench_deepspeech.full_size_weights``: n_hidden 2048, seed 0) and the
same ``--seconds`` of whitened inputs (50 steps a second), batch 1, ``--threads`` torch threads; each
the median of ``--repeats`` forwards after one warm-up (the paths interleaved; min and max kept,
benchmarks/timing.py), wall and CPU time. The two outputs are
compared (largest relative difference).

Memory: in a fresh process per length (``--memory-seconds``), the peak resident size during one
default ("auto") forward (``VmHWM``, reset through ``/proc/self/clear_refs`` just before it) minus the
resident size before it (model and inputs already built): the activations the forward holds, per minute of
audio. Linux only. Writes DIR/deepspeech_lstm.json with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

STEPS_PER_SECOND = 50

MEMORY_CHILD = r"""
import gc, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from bench_deepspeech import full_size_weights
from talkface.core.features.deepspeech.model import DeepSpeechAcoustic
torch.set_num_threads(int(sys.argv[3]))
model = DeepSpeechAcoustic(full_size_weights()).eval()
x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, int(sys.argv[2]), 494), dtype=np.float32))
with torch.inference_mode():
    model(x[:, :50])
gc.collect()
def status(key):  # KiB, from /proc/self/status
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current size
    f.write("5")
with torch.inference_mode():
    model(x)
print(before, status("VmHWM"))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio length timed on both paths")
    parser.add_argument("--memory-seconds", type=float, nargs="+", default=[10.0, 20.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards (>= 3): the median")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from bench_deepspeech import SEED, full_size_weights
    from timing import RULE, interleaved, machine_facts, write_result

    from talkface import __version__
    from talkface.core.features.deepspeech.model import DeepSpeechAcoustic

    torch.set_num_threads(args.threads)
    load_start = [round(v, 2) for v in os.getloadavg()]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    model = DeepSpeechAcoustic(full_size_weights()).eval()
    steps = int(args.seconds * STEPS_PER_SECOND)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, steps, 494), dtype=np.float32))
    paths, outputs = {}, {}

    def forward(impl: str):
        model.lstm_impl = impl
        with torch.inference_mode():
            return model(x)

    for impl in ("loop", "torch"):  # warm-up
        model.lstm_impl = impl
        with torch.inference_mode():
            model(x[:, :50])
    timings = interleaved({impl: (lambda impl=impl: forward(impl)) for impl in ("loop", "torch")},
                          args.repeats, digits=3, keep_value=True)
    for impl, t in timings.items():
        outputs[impl] = t.pop("value")
        paths[impl] = {"wall_s": t["median_s"], "cpu_s": t["cpu_median_s"],
                       "wall_s_min": t["min_s"], "wall_s_max": t["max_s"],
                       "wall_s_all": t["runs_s"], "cpu_s_all": t["cpu_runs_s"],
                       "x_real_time_wall": round(args.seconds / t["median_s"], 3),
                       **{k: t[k] for k in ("load_before", "load_after", "others_cpu_share", "under_load")}}
        print(impl, paths[impl], flush=True)
    diff = (outputs["loop"] - outputs["torch"]).abs().max() / outputs["torch"].abs().max()
    model = outputs = timings = None  # free the weights before the memory children run

    memory = []
    for seconds in args.memory_seconds:
        child = [sys.executable, "-c", MEMORY_CHILD, str(HERE), str(int(seconds * STEPS_PER_SECOND)),
                 str(args.threads)]
        out = subprocess.run(child, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        before, after = (int(v) for v in out.stdout.split()[-2:])  # KiB
        gib = (after - before) / 2**20
        memory.append({"audio_seconds": seconds, "peak_rss_growth_gib": round(gib, 4),
                       "gib_per_audio_minute": round(gib * 60 / seconds, 3)})
        print(memory[-1], flush=True)

    record = {
        "benchmark": "deepspeech_lstm",
        "talkface_version": __version__,
        "date": started,
        "machine": machine_facts(torch=torch.__version__),
        "threads": args.threads,
        "nice": os.nice(0),
        "load_average_before": load_start,
        "weights": f"random at the released sizes (n_hidden 2048, seed {SEED})",
        "audio_seconds": args.seconds,
        "batch": 1,
        "timing": f"median of {args.repeats} forwards after one warm-up (inputs to logits; min and max kept; "
                  "the two paths interleaved)",
        "under_load": any(p["under_load"] for p in paths.values()),
        "under_load_rule": RULE,
        "paths": paths,
        "loop_speedup_wall": round(paths["torch"]["wall_s"] / paths["loop"]["wall_s"], 3),
        "loop_speedup_cpu": round(paths["torch"]["cpu_s"] / paths["loop"]["cpu_s"], 3),
        "max_rel_diff_loop_vs_torch": float(diff),
        "memory_lstm_impl": "auto (torch)",
        "memory": memory,
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    write_result(args.out, "deepspeech_lstm.json", json.loads(json.dumps(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
