"""Real-time factor of the DeepSpeech v0.1.0 backend with full-size weights (n_hidden 2048, random).

    python benchmarks/bench_deepspeech.py --out benchmarks/results/

Measures audio-seconds processed per wall-second (RTF, higher is faster), from 16 kHz audio to 50 Hz
logits (MFCC, context windows, the network), on CPU with 2 threads:
- talkface unbatched: one 60 s clip;
- talkface batched: ``--batched-clips`` clips of 3 s (GRID-length; 64 by default), the backend's
  default ``batch_size`` (64) clips per forward; and the same clips at the smaller batch sizes of
  ``--sweep`` (8, 20, 32), each as a share of the roofline, which shows why the default is 64;
- reference: TensorFlow 1.x (what VOCA / AD-NeRF users run) does not install on this Python, so the
  stand-in is the same forward in plain NumPy float32 (dense layers and LSTM input projections as
  whole-sequence GEMMs, the recurrence step by step: what a straightforward port does), run clip by
  clip as VOCA runs TensorFlow. It is timed on a shorter excerpt (``--reference-seconds``) because its
  cost per audio second is constant; the ratio is talkface RTF / reference RTF.
Every figure (the machine's GEMM rate and mat-vec bandwidth, the three runs) is taken ``--repeats``
times, interleaved, with the load average before and after each; the JSON keeps every run, the
medians (the headline figures), min and max, and the batched and unbatched real-time factors as a
share of the roofline measured in the same run (``roofline_definition`` in the JSON says exactly how).
Writes DIR/deepspeech.json.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from talkface import __version__
from talkface.core.features.deepspeech.backend import DeepSpeechBackend
from talkface.core.features.deepspeech.graphdef import DeepSpeechWeights, LstmWeights
from talkface.core.features.deepspeech.inputs import audio_to_inputs
from talkface.core.features.deepspeech.model import DeepSpeechAcoustic
from talkface.utils.atomic import write_json

N_HIDDEN = 2048
SEED = 0
#: the batch ``DeepSpeechBackend`` runs by default: the figure users get from ``compute_batch``
DEFAULT_BATCH = inspect.signature(DeepSpeechBackend.__init__).parameters["batch_size"].default


def full_size_weights(seed: int = SEED) -> DeepSpeechWeights:
    """v0.1.0's shapes (n_hidden 2048, n_cell 2048), DeepSpeech's init std 0.046875."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.046875)

    h = N_HIDDEN
    dense = {"h1": w(494, h), "b1": w(h), "h2": w(h, h), "b2": w(h), "h3": w(h, 2 * h), "b3": w(2 * h),
             "h5": w(2 * h, h), "b5": w(h), "h6": w(h, 29), "b6": w(29)}
    lstm = {d: LstmWeights(kernel=w(3 * h, 4 * h), bias=w(4 * h)) for d in ("fw", "bw")}
    return DeepSpeechWeights(dense=dense, lstm=lstm)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t))
    return (0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


class NumpyDeepSpeech:
    """The stand-in reference: DeepSpeech.py's BiRNN in plain NumPy float32, one clip at a time."""

    def __init__(self, weights: DeepSpeechWeights) -> None:
        self.d = weights.dense
        self.lstm = weights.lstm
        self.n = weights.n_cell

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        x = inputs
        for k in ("1", "2", "3"):
            x = np.minimum(np.maximum(x @ self.d[f"h{k}"] + self.d[f"b{k}"], 0), 20)
        outs = [self._direction(x, "fw"), self._direction(x[::-1], "bw")[::-1]]
        x = np.minimum(np.maximum(np.concatenate(outs, axis=1) @ self.d["h5"] + self.d["b5"], 0), 20)
        return x @ self.d["h6"] + self.d["b6"]

    def _direction(self, x: np.ndarray, name: str) -> np.ndarray:
        n, kernel, bias = self.n, self.lstm[name].kernel, self.lstm[name].bias
        pre = x @ kernel[: x.shape[1]] + bias  # input projections for every step at once
        w_h = np.ascontiguousarray(kernel[x.shape[1] :])
        h, c = np.zeros(n, np.float32), np.zeros(n, np.float32)
        out = np.empty((len(x), n), np.float32)
        for t in range(len(x)):
            z = pre[t] + h @ w_h
            i, j, f, o = z[:n], z[n : 2 * n], z[2 * n : 3 * n], z[3 * n :]
            c = c / (1 + np.exp(-(f + 1.0))) + np.tanh(j) / (1 + np.exp(-i))
            h = np.tanh(c) / (1 + np.exp(-o))
            out[t] = h
        return out


ROOFLINE_DEFINITION = (
    "classic roofline, measured now on this CPU with --threads threads: the time for one audio second "
    "is at least the dense work (layers 1-3, 5, 6 and both LSTM input projections, batch x steps rows "
    "each) at the GEMM rate, plus the recurrent products of both directions, each step taking the "
    "longer of their FLOPs at the GEMM rate and streaming both recurrent matrices (2 x n_cell x 4 "
    "n_cell float32) at the mat-vec bandwidth; a batch of B clips shares one stream per step, so "
    "unbatched (B=1) the stream is the bound, from B=20 on the FLOPs are. GEMM rate: a 2048^3 float32 "
    "matmul (5 products); bandwidth: the (1, n_cell) x (n_cell, 4 n_cell) mat-vec (20 products). "
    "Element-wise work, the MFCC front end and weight reorders count as zero. rtf_bound_* are the "
    "medians over the repeats, as are the real-time factors they are compared with."
)


def model_costs(weights: DeepSpeechWeights) -> dict[str, float]:
    """FLOPs and bytes per audio second (50 steps) of the parts the roofline separates."""
    d, n = weights.dense, weights.n_cell
    n3 = d["h3"].shape[1]
    dense_macs = sum(d[k].size for k in ("h1", "h2", "h3", "h5", "h6")) + 2 * n3 * 4 * n
    recurrent_macs = 2 * n * 4 * n
    return {
        "dense_flop": 50 * 2 * dense_macs,
        "recurrent_flop": 50 * 2 * recurrent_macs,
        "recurrent_bytes_per_stream": 50 * recurrent_macs * 4,  # both matrices, once per step
    }


def measure_machine(n_cell: int) -> tuple[float, float]:
    """(GEMM GFLOP/s, mat-vec GB/s) now."""
    a = torch.randn(2048, 2048)
    a @ a
    start = time.perf_counter()
    for _ in range(5):
        a @ a
    gflops = 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9
    w_h, v = torch.randn(n_cell, 4 * n_cell), torch.randn(1, n_cell)
    v @ w_h
    start = time.perf_counter()
    for _ in range(20):
        v @ w_h
    gbps = 20 * w_h.numel() * 4 / (time.perf_counter() - start) / 1e9
    return gflops, gbps


def rtf_bound(costs: dict[str, float], gflops: float, gbps: float, batch: int) -> float:
    compute = costs["recurrent_flop"] / (gflops * 1e9)
    stream = costs["recurrent_bytes_per_stream"] / batch / (gbps * 1e9)
    return 1.0 / (costs["dense_flop"] / (gflops * 1e9) + max(compute, stream))


def roofline(weights: DeepSpeechWeights, gflops: float, gbps: float, batch: int) -> dict[str, float]:
    """This machine's limits from one measurement (the CPU is shared, so they move): the best RTF."""
    costs = model_costs(weights)
    flop_per_audio_s = costs["dense_flop"] + costs["recurrent_flop"]
    return {
        "gemm_gflops": gflops,
        "matvec_gb_per_s": gbps,
        "gflop_per_audio_second": flop_per_audio_s / 1e9,
        "recurrent_gb_per_audio_second_unbatched": costs["recurrent_bytes_per_stream"] / 1e9,
        "rtf_bound_batched": rtf_bound(costs, gflops, gbps, batch),
        "rtf_bound_unbatched": rtf_bound(costs, gflops, gbps, 1),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}


def run_talkface(model: DeepSpeechAcoustic, clips: list[np.ndarray], batch_size: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        inputs = [audio_to_inputs(a) for a in clips]
        for s in range(0, len(inputs), batch_size):
            chunk = inputs[s : s + batch_size]
            lengths = [len(x) for x in chunk]
            batch = np.zeros((len(chunk), max(lengths), 494), np.float32)
            for r, x in enumerate(chunk):
                batch[r, : len(x)] = x
            model(torch.from_numpy(batch), torch.tensor(lengths))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length timed for talkface")
    parser.add_argument("--reference-seconds", type=float, default=10.0, help="audio timed for NumPy")
    parser.add_argument("--clip-seconds", type=float, default=3.0, help="clip length in the batched run")
    parser.add_argument("--batched-clips", type=int, default=DEFAULT_BATCH, help="clips in the batched run")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                        help=f"clips per forward in the headline batched run (the backend's default, "
                             f"{DEFAULT_BATCH})")
    parser.add_argument("--sweep", default="8,20,32", help="other batch sizes timed on the same clips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    weights = full_size_weights()
    model = DeepSpeechAcoustic(weights).eval()
    reference = NumpyDeepSpeech(weights)
    audio = speechlike(args.seconds, seed=1)
    n_clips = args.batched_clips
    batched_seconds = n_clips * args.clip_seconds
    clips = np.array_split(speechlike(batched_seconds, seed=2), n_clips)
    sweep = [int(b) for b in args.sweep.split(",") if b.strip()]
    ref_audio = audio[: int(args.reference_seconds * 16000)]

    # Agreement check on a short excerpt, so the reference is known to compute the same thing.
    probe = audio_to_inputs(audio[: 16000])
    with torch.inference_mode():
        ours = model(torch.from_numpy(probe)[None])[0].numpy()
    theirs = reference(probe)
    agreement = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    run_talkface(model, clips[:2], args.batch_size)  # warm-up: oneDNN primitives, allocator

    def timed(fn) -> dict[str, float]:
        before = os.getloadavg()[0]
        start = time.perf_counter()
        value = fn()
        wall = time.perf_counter() - start
        return {"value": wall if value is None else value, "load_before": before,
                "load_after": os.getloadavg()[0]}

    def reference_run() -> None:
        reference(audio_to_inputs(ref_audio))

    runs: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("gemm_gflops", "matvec_gb_per_s", "talkface_batched", "talkface_unbatched",
                        "numpy_reference", *(f"talkface_batch_{b}" for b in sweep))}
    load_before = os.getloadavg()
    for _ in range(args.repeats):  # interleaved, so each figure sees the same spread of load
        machine = timed(lambda: measure_machine(weights.n_cell))
        gflops, gbps = machine.pop("value")
        runs["gemm_gflops"].append({"value": gflops, **machine})
        runs["matvec_gb_per_s"].append({"value": gbps, **machine})
        runs["talkface_batched"].append(timed(lambda: run_talkface(model, clips, args.batch_size)))
        for b in sweep:
            runs[f"talkface_batch_{b}"].append(timed(lambda b=b: run_talkface(model, clips, b)))
        runs["talkface_unbatched"].append(timed(lambda: run_talkface(model, [audio], 1)))
        runs["numpy_reference"].append(timed(reference_run))
    load_after = os.getloadavg()

    audio_s = {"talkface_batched": batched_seconds, "talkface_unbatched": args.seconds,
               "numpy_reference": args.reference_seconds}
    audio_s.update({f"talkface_batch_{b}": batched_seconds for b in sweep})
    seconds = {k: spread([r["value"] for r in runs[k]]) for k in audio_s}
    rtf_spread = {k: spread([audio_s[k] / r["value"] for r in runs[k]]) for k in audio_s}
    rtf = {k: v["median"] for k, v in rtf_spread.items()}
    gflops_s = spread([r["value"] for r in runs["gemm_gflops"]])
    gbps_s = spread([r["value"] for r in runs["matvec_gb_per_s"]])
    clip_batch = min(args.batch_size, n_clips)
    limits = roofline(weights, gflops_s["median"], gbps_s["median"], clip_batch)
    per_repeat_bounds = [roofline(weights, g["value"], b["value"], clip_batch)
                         for g, b in zip(runs["gemm_gflops"], runs["matvec_gb_per_s"], strict=True)]
    share = {run: rtf[f"talkface_{run}"] / limits[f"rtf_bound_{run}"] for run in ("batched", "unbatched")}
    share_per_repeat = {
        run: [audio_s[f"talkface_{run}"] / r["value"] / bound[f"rtf_bound_{run}"]
              for r, bound in zip(runs[f"talkface_{run}"], per_repeat_bounds, strict=True)]
        for run in ("batched", "unbatched")
    }
    batch_sweep = {}
    for b in sorted({*sweep, args.batch_size}):  # the headline run stands for its own batch size
        run = "talkface_batched" if b == args.batch_size else f"talkface_batch_{b}"
        bound = roofline(weights, gflops_s["median"], gbps_s["median"], min(b, n_clips))["rtf_bound_batched"]
        batch_sweep[str(b)] = {"rtf": rtf[run], "rtf_spread": rtf_spread[run], "rtf_bound": bound,
                               "share_of_roofline": rtf[run] / bound}
    result = {
        "benchmark": "deepspeech",
        "what": "real-time factor (audio s per wall s), 16 kHz audio -> 50 Hz logits, random weights",
        "variant": "DeepSpeech v0.1.0 acoustic model, n_hidden 2048, float32",
        "weights": f"random (seed {SEED}) at the released shapes: no output_graph.pb is used, speed only",
        "device": "cpu",
        "threads": args.threads,
        "nice": os.nice(0),
        "lstm_impl": f"{model.lstm_impl} (torch: oneDNN's LSTM primitive, packed when lengths differ)",
        "audio_seconds": args.seconds,
        "batched_clips": n_clips,
        "clip_seconds": args.clip_seconds,
        "batched_audio_seconds": batched_seconds,
        "batch_size": args.batch_size,
        "batch_size_is_backend_default": args.batch_size == DEFAULT_BATCH,
        "batch_sweep": batch_sweep,
        "repeats": args.repeats,
        "reference": "plain NumPy float32 forward (stand-in: TensorFlow 1.x is not installable here)",
        "reference_audio_seconds": args.reference_seconds,
        "seconds": {k: v["median"] for k, v in seconds.items()},
        "seconds_spread": seconds,
        "rtf": rtf,
        "rtf_spread": rtf_spread,
        "ratio_vs_reference": {
            "unbatched": rtf["talkface_unbatched"] / rtf["numpy_reference"],
            "batched": rtf["talkface_batched"] / rtf["numpy_reference"],
        },
        "target_rtf": 20.0,
        "roofline": limits,
        "roofline_spread": {"gemm_gflops": gflops_s, "matvec_gb_per_s": gbps_s},
        "roofline_definition": ROOFLINE_DEFINITION,
        "share_of_roofline": share,
        "share_of_roofline_per_repeat": share_per_repeat,
        "target_share_of_roofline_batched": 0.85,
        "runs": runs,
        "max_rel_diff_vs_reference": agreement,
        "load_average_before_after": [load_before[0], load_after[0]],
        "seed": SEED,
        "talkface_version": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "deepspeech.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
