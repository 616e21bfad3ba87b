"""Texture training throughput and generation speed at 128x128, against pix2pix (what users would
otherwise train for paired image-to-image synthesis).

1. Training samples/s: one talkface texture step (discriminator + generator update, LSGAN + L1 +
   attention terms, through the Fabric-wrapped TextureStage.training_step) vs one pix2pix step
   (Isola et al. 2017: U-Net-128 generator, ngf 64, batch norm, dropout in the first decoder blocks;
   70x70 PatchGAN, ndf 64; LSGAN + L1 100), both written in plain torch here, same batch and device.
2. Generation fps: stages 1-3 (speech landmarks, blinks, retargeting) + landmark rendering + texture
   generator on a 3 s utterance whose features are already computed (the "after features" pipeline),
   without and with H.264 encoding; vs pix2pix U-Net-128 inference on the same frames.

Weights are freshly initialised (speed does not depend on training). CPU threads: ``--threads``. Each
figure is the median of its timed calls (``--train-steps``, ``--repeats``; at least 3) after a warm-up,
fastest and slowest kept, with the load average before and after (benchmarks/timing.py).

    python benchmarks/bench_texture_generate.py --out benchmarks/results/
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from talkface.utils import atomic
from talkface.utils.provenance import provenance

SIZE = 128
RATE_SPREAD: list[dict[str, float]] = []


# -------------------------------------------------------------------------------------------------
# pix2pix baseline (architecture from Isola et al. 2017, appendix 6.1.1; written here in plain torch)


class _P2PBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, norm: bool = True, dropout: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(cin, cout, 4, 2, 1) if down else nn.ConvTranspose2d(cin, cout, 4, 2, 1)
        layers: list[nn.Module] = [conv]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers.append(nn.LeakyReLU(0.2) if down else nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Pix2PixUNet128(nn.Module):
    """Encoder C64-C128-C256-C512-C512-C512-C512 (128 -> 1), mirrored decoder with skips, tanh."""

    def __init__(self, cin: int = 6, ngf: int = 64) -> None:
        super().__init__()
        widths = [ngf, ngf * 2, ngf * 4, ngf * 8, ngf * 8, ngf * 8, ngf * 8]
        self.down = nn.ModuleList()
        prev = cin
        for i, w in enumerate(widths):
            self.down.append(_P2PBlock(prev, w, True, norm=0 < i < len(widths) - 1))
            prev = w
        self.up = nn.ModuleList()
        for j, i in enumerate(range(len(widths) - 1, 0, -1)):
            cin_up = widths[i] if j == 0 else widths[i] * 2
            self.up.append(_P2PBlock(cin_up, widths[i - 1], False, dropout=j < 3))
        self.last = nn.ConvTranspose2d(widths[0] * 2, 3, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        for j, layer in enumerate(self.up):
            if j > 0:
                x = torch.cat([x, skips[-1 - j]], 1)
            x = layer(x)
        return torch.tanh(self.last(torch.cat([x, skips[0]], 1)))


def pix2pix_discriminator(cin: int = 9, ndf: int = 64) -> nn.Module:
    """Conditional: sees the 6-channel input (identity + landmark image) and a 3-channel frame."""
    return nn.Sequential(
        nn.Conv2d(cin, ndf, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 1), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 8, 1, 4, 1, 1),
    )


def pix2pix_train_rate(batch: dict[str, torch.Tensor], steps: int, device: torch.device, bf16: bool) -> float:
    gen, disc = Pix2PixUNet128().to(device), pix2pix_discriminator().to(device)
    if device.type == "cuda":
        gen, disc = gen.to(memory_format=torch.channels_last), disc.to(memory_format=torch.channels_last)
    og = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999))
    src = torch.cat([batch["identity"], batch["landmark_image"]], 1)
    real = batch["target"]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            fake = gen(src)
            od.zero_grad()
            ld = 0.5 * ((disc(torch.cat([src, real], 1)).float() - 1).pow(2).mean()
                        + disc(torch.cat([src, fake.detach()], 1)).float().pow(2).mean())
        ld.backward()
        od.step()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            og.zero_grad()
            lg = ((disc(torch.cat([src, fake], 1)).float() - 1).pow(2).mean()
                  + 100 * (fake.float() - real).abs().mean())
        lg.backward()
        og.step()

    return _rate(step, steps, len(real), device)


def _rate(fn, steps: int, per_step: int, device: torch.device) -> float:
    """Items/s of the median of ``steps`` timed calls (at least 3) after a warm-up (benchmarks/timing.py);
    the fastest and slowest call, every call, the load before and after and the under-load verdict go
    into RATE_SPREAD."""
    from timing import measure

    fn()  # warm-up (allocations, kernel selection)

    def call() -> None:
        _sync(device)
        fn()
        _sync(device)

    t = measure(call, steps, digits=5)
    RATE_SPREAD.append({"best_s": t["min_s"], "median_s": t["median_s"], "worst_s": t["max_s"],
                        "runs_s": t["runs_s"], "calls": steps,
                        **{k: t[k] for k in ("load_before", "load_after", "others_cpu_share", "under_load")}})
    return per_step / t["median_s"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# -------------------------------------------------------------------------------------------------
# talkface


def _batch(n: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return {k: (torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1).to(device).contiguous(memory_format=fmt)
            for k in ("identity", "landmark_image", "target")}


def texture_train_rate(batch: dict[str, torch.Tensor], steps: int, device: torch.device, bf16: bool) -> float:
    from lightning.fabric import Fabric

    from talkface.models.texture import TextureConfig
    from talkface.train.loop import TrainContext, TrainSettings
    from talkface.train.texture import TextureStage

    stage = TextureStage(".", config=TextureConfig())
    stage.channels_last = device.type == "cuda"
    settings = TrainSettings(out_dir=Path(tempfile.mkdtemp()), batch_size=len(batch["target"]), lr=2e-4)
    fabric = Fabric(accelerator="cuda" if device.type == "cuda" else "cpu", devices=1,
                    precision="bf16-mixed" if bf16 else "32-true")
    models = stage.build_models()
    opts = stage.build_optimizers(models, settings)
    wrapped = {k: fabric.setup(m, opts[k]) for k, m in models.items()}
    ctx = TrainContext(fabric=fabric, models={k: w[0] for k, w in wrapped.items()},
                       optimizers={k: w[1] for k, w in wrapped.items()}, settings=settings)
    return _rate(lambda: stage.training_step(ctx, batch), steps, len(batch["target"]), device)


def _generator(device: torch.device, batch_size: int):
    from talkface.core.alignment import load_template
    from talkface.core.features import get_feature_backend
    from talkface.generation.generator import Generator
    from talkface.models.blinks import BlinkConfig, BlinkGenerator
    from talkface.models.speech_to_landmarks import LandmarkConfig, SpeechToLandmarks
    from talkface.models.texture import TextureConfig, TextureGenerator

    torch.manual_seed(0)
    lm = SpeechToLandmarks(LandmarkConfig(feature_dim=40)).to(device).eval()
    mean_face = load_template(1)
    lm.mean_face.copy_(torch.from_numpy(mean_face))
    blink = BlinkGenerator(BlinkConfig(scale=0.003)).to(device).eval()
    config = TextureConfig()
    tex = TextureGenerator(config).to(device).eval().to(memory_format=torch.channels_last)
    return Generator(lm, mean_face, blink, tex, config, get_feature_backend("logmel"), device, batch_size)


def generation_rates(audio: np.ndarray, device: torch.device, batch_size: int, repeats: int
                     ) -> dict[str, float]:
    from talkface.core import media
    from talkface.core.alignment import load_template
    from talkface.generation.generator import FPS, landmarks_from_features, n_frames_for, render_frames

    gen = _generator(device, batch_size)
    n = n_frames_for(len(audio))
    feats = gen.features.compute(audio, n_frames=n, fps=FPS)
    identity_px = load_template(SIZE)
    identity_crop = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)

    def after_features() -> list[np.ndarray]:
        landmarks = landmarks_from_features(gen, feats, identity_px)
        return list(render_frames(gen, identity_crop, landmarks))

    fps_pipeline = _rate(after_features, repeats, n, device)
    spread_pipeline = dict(RATE_SPREAD[-1])
    frames = after_features()

    with tempfile.TemporaryDirectory() as tmp:

        def with_encoding() -> None:
            landmarks = landmarks_from_features(gen, feats, identity_px)
            media.write_video(Path(tmp) / "x.mp4", render_frames(gen, identity_crop, landmarks), FPS,
                              audio=audio)

        fps_with_encoding = _rate(with_encoding, repeats, n, device)
        spread_encoding = dict(RATE_SPREAD[-1])

    base = Pix2PixUNet128().to(device).eval()
    x = torch.rand(len(frames), 6, SIZE, SIZE, device=device) * 2 - 1

    @torch.inference_mode()
    def pix2pix_frames() -> None:
        for s in range(0, len(x), batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                base(x[s:s + batch_size])

    base = base.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    fps_p2p = _rate(pix2pix_frames, repeats, len(x), device)
    return {"frames": n, "fps_after_features": fps_pipeline,
            "fps_after_features_with_h264": fps_with_encoding, "timing_after_features": spread_pipeline,
            "timing_with_h264": spread_encoding,
            "fps_after_features_median": n / spread_pipeline["median_s"],
            "fps_after_features_with_h264_median": n / spread_encoding["median_s"],
            "fps_after_features_best": n / spread_pipeline["best_s"],
            "fps_after_features_worst": n / spread_pipeline["worst_s"],
            "fps_after_features_with_h264_best": n / spread_encoding["best_s"],
            "pix2pix_unet128_fps": fps_p2p, "ratio_fps_vs_pix2pix": fps_pipeline / fps_p2p}


def _audio() -> tuple[np.ndarray, str]:
    from talkface.core import media
    from talkface.utils.fixtures import fixtures_dir

    clips = sorted((fixtures_dir() / "grid" / "s1").glob("*.mpg"))
    if clips:
        return media.read_audio(clips[0], 16000), str(clips[0].name)
    t = np.arange(48000) / 16000
    return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), "synthetic 3 s tone"


def run(device: torch.device, train_batch: int, train_steps: int, gen_batch: int, repeats: int) -> dict:
    bf16 = device.type == "cuda"
    batch = _batch(train_batch, device)
    ours = texture_train_rate(batch, train_steps, device, bf16)
    spread_ours = dict(RATE_SPREAD[-1])
    p2p = pix2pix_train_rate(batch, train_steps, device, bf16)
    spread_p2p = dict(RATE_SPREAD[-1])
    audio, source = _audio()
    gen = generation_rates(audio, device, gen_batch, repeats)
    return {
        "device": str(device), "precision": "bf16-mixed, channels_last" if bf16 else "fp32",
        "train_batch": train_batch, "train_steps_timed": train_steps,
        "texture_train_samples_per_s": ours, "pix2pix_train_samples_per_s": p2p,
        "ratio_train_vs_pix2pix": ours / p2p, "timing_train": spread_ours, "timing_pix2pix_train": spread_p2p,
        "generation_batch": gen_batch, "generation_audio": source, **gen,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch.")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=3, help="Timed training steps (>= 3): the median.")
    ap.add_argument("--repeats", type=int, default=4, help="Timed generation passes over the utterance.")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import datetime as dt

    from run_all import machine
    from timing import RULE, loadavg

    load_before = loadavg()
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    torch.set_num_threads(args.threads)
    results = {"cpu": run(torch.device("cpu"), args.train_batch, args.train_steps, 16, args.repeats)}
    if torch.cuda.is_available():
        results["cuda"] = run(torch.device("cuda"), 64, 20, 128, 10)
        results["cuda"]["gpu"] = torch.cuda.get_device_name(0)
    record = {
        "benchmark": "texture_generate", "image_size": SIZE, "cpu_threads": args.threads,
        "date": date, "machine": machine(), "nice": os.nice(0),
        "load_average_at_start": load_before, "load_average_at_end": loadavg(), "results": results,
        "under_load": any(t.get("under_load") for t in RATE_SPREAD), "under_load_rule": RULE,
        "baseline": "pix2pix (Isola et al. 2017) U-Net-128 ngf 64 + 70x70 PatchGAN ndf 64, plain torch",
        "weights": "freshly initialised, seed 0 (speed does not depend on training)",
        "timing_rule": "median of the timed calls after one warm-up (fastest and slowest kept beside it)",
        **provenance(torch=torch.__version__),
    }
    atomic.write_json(args.out / "texture_generate.json", record)
    for name, r in results.items():
        print(f"{name}: texture train {r['texture_train_samples_per_s']:.2f} samples/s "
              f"(pix2pix {r['pix2pix_train_samples_per_s']:.2f}, ratio {r['ratio_train_vs_pix2pix']:.2f}); "
              f"generation {r['fps_after_features']:.1f} fps after features, "
              f"{r['fps_after_features_with_h264']:.1f} fps with H.264 "
              f"(pix2pix {r['pix2pix_unet128_fps']:.1f} fps, ratio {r['ratio_fps_vs_pix2pix']:.2f})")


if __name__ == "__main__":
    main()
