"""Training throughput of the landmark stage (samples/s, one sample = a 32-frame window), CPU (and GPU
when present), through talkface's Fabric loop vs a hand-written plain PyTorch loop doing the same work
(the loop a user would otherwise write): the ratio is the machinery's overhead.

Optionally (``--data`` a prepared GRID store), a short learnability run: validation mouth point error
and lmd_mouth:centroid-mean of the trained model next to the mean-face baseline (mouth held still).

    python benchmarks/bench_train_landmarks.py --out benchmarks/results/ [--data /tmp/grid-prepared]

Each side runs ``--repeat`` times (at least 3), the two alternating so both see the same load; each
figure is the median rate, min and max and every run kept, with the load average before and after and
whether it was measured under load (benchmarks/timing.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from talkface.models.speech_to_landmarks import LandmarkConfig, SpeechToLandmarks, landmark_loss
from talkface.store.dataset import Dataset
from talkface.store.dataset_writer import DatasetStore
from talkface.train import data as mdata
from talkface.train.landmarks import LandmarkStage
from talkface.train.loop import TrainSettings, run_training
from talkface.utils import atomic
from talkface.utils.provenance import provenance


def _synthetic_store(root: Path, n_clips: int = 12, t: int = 75, d: int = 40) -> Path:
    rng = np.random.default_rng(0)
    store = DatasetStore(root)
    store.claim({"corpus": "synthetic", "crop_size": 128, "fps": 25.0, "feature_backend": "logmel"})
    for i in range(n_clips):
        pts = (rng.random((68, 2)) * 100 + 14)[None].repeat(t, 0).astype(np.float32)
        store.write_clip(f"b{i}", landmarks=pts, face_found=np.ones(t, bool),
                         transform=np.zeros((t, 2, 3), np.float32), landmarks_aligned=pts,
                         audio_features=rng.normal(size=(t, 16, d)).astype(np.float16))
        store.write_row({"clip_id": f"b{i}", "speaker": "x", "n_frames": t, "fps": 25.0,
                         "status": "ok", "crop_size": 128, "feature_backend": "logmel"})
    store.add_protocol("seen", {f"b{i}": "train" for i in range(n_clips)})
    store.write_manifest()
    return root


def plain_loop(root: Path, steps: int, batch: int, device: str) -> float:
    """The same model, data and loss in a bare PyTorch loop; samples/s after one warm-up step."""
    dataset = Dataset.open(root)
    clips = mdata.load_clips(dataset, mdata.training_parts(dataset, None, seed=0).train)
    ds = mdata.WindowDataset(clips, 32, 4)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True)
    model = SpeechToLandmarks(LandmarkConfig(feature_dim=40)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    done, t0 = 0, None
    while done < steps + 1:
        for b in loader:
            if done == 1:
                t0 = time.perf_counter()
            b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
            opt.zero_grad()
            loss = landmark_loss(model(b["features"]), b["landmarks"], b["valid"], 4.0, 1.0)["loss"]
            loss.backward()
            opt.step()
            done += 1
            if done >= steps + 1:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def fabric_loop(root: Path, steps: int, batch: int, accelerator: str, tmp: Path) -> float:
    settings = TrainSettings(out_dir=tmp / f"fabric_{accelerator}", max_steps=steps, batch_size=batch,
                             accelerator=accelerator, ckpt_every=10**9, val_every=10**9, image_every=10**9,
                             log_every=10**9)
    return run_training(LandmarkStage(root, None), settings, quiet=True).samples_per_s


def learnability(data: Path, steps: int, tmp: Path) -> dict:
    settings = TrainSettings(out_dir=tmp / "learn", max_steps=steps, batch_size=16, accelerator="cpu",
                             val_every=steps, ckpt_every=steps, seed=0)
    stage = LandmarkStage(data, None)  # the dataset's own protocol
    result = run_training(stage, settings, quiet=True)
    return {"data": str(data), "protocol": stage.parts.protocol, "steps": steps, "batch_size": 16, "seed": 0,
            **result.last_validation}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--data", type=Path, default=None, help="prepared GRID store for the learnability run")
    ap.add_argument("--learn-steps", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each loop, alternating (the median)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_all import machine
    from timing import RULE, loadavg, window

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    results: dict = {"benchmark": "train_landmarks", "unit": "samples/s (32-frame windows, 16x40 logmel)",
                     "batch_size": args.batch_size, "steps": args.steps,
                     **provenance(torch=torch.__version__, threads=torch.get_num_threads()),
                     "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": machine(), "nice": os.nice(0), "load_average_before": loadavg(),
                     "repeats": args.repeat,
                     "timing": f"median of {args.repeat} runs of each loop, alternating (min and max kept); "
                               "each run's rate after one warm-up step",
                     "under_load_rule": RULE}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        root = _synthetic_store(tmp / "store")
        devices = [("cpu", "cpu")] + ([("cuda", "cuda")] if torch.cuda.is_available() else [])
        for name, dev in devices:
            w, fabs, plains = window(), [], []
            for i in range(args.repeat):
                order = ("fabric", "plain") if i % 2 == 0 else ("plain", "fabric")
                for side in order:
                    if side == "fabric":
                        fabs.append(fabric_loop(root, args.steps, args.batch_size, name, tmp / f"run{i}"))
                    else:
                        plains.append(plain_loop(root, args.steps, args.batch_size, dev))
            fab, plain = statistics.median(fabs), statistics.median(plains)
            results[name] = {"talkface_fabric_samples_per_s": fab, "plain_torch_samples_per_s": plain,
                             "ratio_talkface_over_plain": fab / plain,
                             "talkface_fabric_samples_per_s_min": min(fabs),
                             "talkface_fabric_samples_per_s_max": max(fabs),
                             "plain_torch_samples_per_s_min": min(plains),
                             "plain_torch_samples_per_s_max": max(plains),
                             "talkface_fabric_runs": fabs, "plain_torch_runs": plains, **w.close()}
            print(f"{name}: talkface {fab:.1f} samples/s, plain torch {plain:.1f} samples/s, "
                  f"ratio {fab / plain:.2f} (medians of {args.repeat})")
        if args.data is not None:
            results["learnability"] = learnability(args.data, args.learn_steps, tmp)
            print("learnability:", results["learnability"])
    results["load_average_after"] = loadavg()
    results["under_load"] = any(results[name]["under_load"] for name, _ in devices)
    atomic.write_json(args.out / "train_landmarks.json", results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
