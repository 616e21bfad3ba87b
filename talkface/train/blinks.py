"""Training stage 2 (eye blinks, unsupervised): real eye-landmark sequences from the dataset, the MMD
objective's data, and the stage that :func:`talkface.train.loop.run_training` runs (the generator and
the MMD are in :mod:`talkface.models.blinks`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from talkface.models.blinks import (
    BlinkConfig,
    BlinkGenerator,
    blink_statistics,
    eye_aspect_ratio,
    local_windows,
    median_distance,
    point_set,
    rbf_mmd2,
)
from talkface.train import data as mdata
from talkface.train.loop import TrainContext, TrainSettings


def eye_sequences(clips: list[mdata.ClipArrays], seq_len: int, stride: int, points: str = "eyes+brows",
                  origin: str = "open-eyes") -> np.ndarray:
    """(N, seq_len, n, 2) real displacements of ``points`` from each clip's ``origin`` shape
    (:class:`BlinkConfig`), all-valid windows."""
    out = []
    for clip in clips:
        if not clip.valid.any():
            continue
        eyes = clip.landmarks[:, point_set(points)]
        disp = eyes - origin_shape(clip, points, origin)
        for s in range(0, len(eyes) - seq_len + 1, stride):
            if clip.valid[s:s + seq_len].all():
                out.append(disp[s:s + seq_len])
    if not out:
        raise ValueError(f"no clip has {seq_len} consecutive frames with a face")
    return np.stack(out).astype(np.float32)


def origin_shape(clip: mdata.ClipArrays, points: str, origin: str) -> np.ndarray:
    """(n, 2) the shape a clip's displacements start from: its mean over all valid frames (``mean``) or
    over the valid frames whose EAR is at least their median (``open-eyes``)."""
    shapes = clip.landmarks[clip.valid][:, point_set(points)]
    if origin == "mean":
        return shapes.mean(axis=0)
    if origin != "open-eyes":
        raise ValueError(f"unknown blink origin {origin!r}: mean or open-eyes")
    ear = eye_aspect_ratio(clip.landmarks[clip.valid])
    return shapes[ear >= np.median(ear)].mean(axis=0)


class _Sequences(Dataset):
    def __init__(self, seqs: np.ndarray) -> None:
        self.seqs = torch.from_numpy(seqs)

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.seqs[i]


def build_stage(data: str | Path, protocol: str | None, seq_len: int = 40) -> BlinkStage:
    """The stage ``talkface train blinks`` runs."""
    return BlinkStage(data, protocol, BlinkConfig(seq_len=seq_len))


class BlinkStage(mdata.DatasetStage):
    """Training stage for :class:`BlinkGenerator` (MMD against real eye-motion sequences)."""

    name = "blinks"

    config_type = BlinkConfig

    def __init__(self, data: str | Path | mdata.PreparedDataset, protocol: str | None = None,
                 config: BlinkConfig | None = None, n_val_samples: int = 256) -> None:
        super().__init__(data, protocol, config)
        self.n_val_samples = n_val_samples

    def setup(self, settings: TrainSettings, resume_state: dict[str, Any] | None) -> None:
        self.resolve_parts(settings, resume_state)
        # Blinks need no speech: every usable clip of the training part serves.
        self.train_clips = mdata.load_clips(self.dataset, self.parts.train)
        if resume_state is not None:
            self.config = BlinkConfig.from_dict(resume_state["config"])
        c = self.config
        self.real = eye_sequences(self.train_clips, c.seq_len, c.seq_stride, c.points, c.origin)
        if resume_state is None:
            c.fps = self.dataset.fps
            c.scale = float(self.real.std())
            flat = torch.from_numpy(self.real / c.scale).reshape(len(self.real), -1)
            med_seq = median_distance(flat)
            med_loc = median_distance(local_windows(torch.from_numpy(self.real / c.scale).reshape(
                len(self.real), c.seq_len, -1), c.local_len)[torch.randperm(len(self.real) * (
                    c.seq_len - c.local_len + 1), generator=torch.Generator().manual_seed(0))[:1000]])
            c.bandwidths_seq = [m * med_seq for m in c.bandwidth_multipliers]
            c.bandwidths_local = [m * med_loc for m in c.bandwidth_multipliers]
            c.mean_eye = np.mean([origin_shape(cl, c.points, c.origin) for cl in self.train_clips
                                  if cl.valid.any()], axis=0).tolist()
        self.real_stats = blink_statistics(list(self.real + np.asarray(c.mean_eye, np.float32)), c.fps,
                                           c.ear_threshold, c.min_frames, c.ear_rel_threshold)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def dataset_info(self) -> dict[str, Any]:
        return mdata.dataset_info(self.dataset, self.parts, n_train_clips=len(self.train_clips),
                                  n_sequences=int(len(self.real)))

    def build_models(self) -> dict[str, nn.Module]:
        return {"blinks": BlinkGenerator(self.config)}

    def build_optimizers(self, models: dict[str, nn.Module], settings: TrainSettings
                         ) -> dict[str, torch.optim.Optimizer]:
        return {"blinks": torch.optim.Adam(models["blinks"].parameters(), lr=settings.lr, betas=(0.5, 0.999))}

    def train_dataset(self) -> Dataset:
        return _Sequences(self.real)

    def mmd_loss(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        f = (fake / c.scale).reshape(len(fake), c.seq_len, -1)
        r = (real / c.scale).reshape(len(real), c.seq_len, -1)
        seq = rbf_mmd2(f.reshape(len(f), -1), r.reshape(len(r), -1), c.bandwidths_seq)
        lf, lr_ = local_windows(f, c.local_len), local_windows(r, c.local_len)
        lf = lf[torch.randperm(len(lf), device=lf.device)[: c.local_samples]]
        lr_ = lr_[torch.randperm(len(lr_), device=lr_.device)[: c.local_samples]]
        local = rbf_mmd2(lf, lr_, c.bandwidths_local)
        return {"loss": seq + c.local_weight * local, "mmd_seq": seq, "mmd_local": local}

    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        gen, opt = ctx.models["blinks"], ctx.optimizers["blinks"]
        opt.zero_grad(set_to_none=True)
        c = self.config
        device = batch.device
        noise = torch.randn(len(batch), c.seq_len, c.noise_dim, device=device)
        style = torch.randn(len(batch), c.style_dim, device=device)
        losses = self.mmd_loss(gen(noise, style).float(), batch.float())
        ctx.fabric.backward(losses["loss"])
        opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def generated_statistics(self, gen: nn.Module, n: int, seed: int = 0,
                             amplitude: float | None = None) -> dict[str, float]:
        """Blink statistics of ``n`` generated sequences at ``amplitude`` (default: the config's)."""
        return self._statistics_of(self._draw(gen, n, seed), amplitude)

    def _draw(self, gen: nn.Module, n: int, seed: int) -> np.ndarray:
        module = getattr(gen, "module", gen)
        return module.draw(n, self.config.seq_len, torch.Generator().manual_seed(seed)).float().cpu().numpy()

    def _statistics_of(self, fake: np.ndarray, amplitude: float | None) -> dict[str, float]:
        c = self.config
        fake = fake * np.float32(c.amplitude if amplitude is None else amplitude)
        return blink_statistics(list(fake + np.asarray(c.mean_eye, np.float32)), c.fps, c.ear_threshold,
                                c.min_frames, c.ear_rel_threshold)

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        """Generated vs real blink statistics at the closure amplitude that matches them best.

        The chosen amplitude is stored in the config, so the checkpoint saved after this validation
        (``last.pt``, and ``best.pt`` when selected) samples with it.
        """
        real = self.real_stats
        fake = self._draw(ctx.models["blinks"], self.n_val_samples, 0)  # one draw, scored at every amplitude
        scored = []
        for k in self.config.amplitude_grid:
            gen_stats = self._statistics_of(fake, k)
            metrics = {"gen_blinks_per_min": gen_stats["blinks_per_min"],
                       "gen_mean_duration_frames": gen_stats["mean_duration_frames"],
                       "gen_closure_depth": gen_stats["closure_depth"], "amplitude": float(k),
                       "real_blinks_per_min": real["blinks_per_min"],
                       "real_mean_duration_frames": real["mean_duration_frames"],
                       "real_closure_depth": real["closure_depth"]}
            score = self.selection_score(metrics)
            finite = score is not None and np.isfinite(score)
            scored.append((score if finite else np.inf, len(scored), metrics))
        best = min(scored)[2]
        self.config.amplitude = best["amplitude"]
        return best

    selection_name = "max(|rate error|, |duration error|, |closure depth error|) of generated vs real blinks"

    def selection_score(self, metrics: dict[str, float]) -> float | None:
        """Worst relative error of the generated blink rate, mean duration and closure depth (the
        lowest EAR of a blink over the sequence median; absent in runs before it was measured) against
        the real data's."""
        errors = [metrics["gen_blinks_per_min"] / metrics["real_blinks_per_min"] - 1,
                  metrics["gen_mean_duration_frames"] / metrics["real_mean_duration_frames"] - 1]
        if "gen_closure_depth" in metrics:
            errors.append(metrics["gen_closure_depth"] / metrics["real_closure_depth"] - 1)
        return max(abs(e) for e in errors)

    def images(self, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """EAR curves of 4 generated and 4 real sequences as small line plots."""
        c = self.config
        module = getattr(ctx.models["blinks"], "module", ctx.models["blinks"])
        fake = module.draw(4, c.seq_len, torch.Generator().manual_seed(1)).float().cpu().numpy()
        mean_eye = np.asarray(c.mean_eye, np.float32)
        curves = [eye_aspect_ratio(s + mean_eye) for s in fake] + [eye_aspect_ratio(s + mean_eye)
                                                                    for s in self.real[:4]]
        return {"blinks/ear_generated_then_real": torch.from_numpy(np.stack([_plot(
            e, c.ear_threshold if c.ear_threshold is not None else c.ear_rel_threshold * float(np.median(e)))
                                                                             for e in curves]))}


def _plot(curve: np.ndarray, threshold: float, h: int = 48) -> np.ndarray:
    """(3, h, T*2) image of an EAR curve in [0, 0.5] with the threshold line."""
    t = len(curve)
    img = np.zeros((3, h, 2 * t), np.float32)
    rows = np.clip((1 - np.asarray(curve) / 0.5) * (h - 1), 0, h - 1).astype(int)
    img[0, int((1 - threshold / 0.5) * (h - 1)), :] = 0.6
    for i, r in enumerate(rows):
        img[:, r, 2 * i:2 * i + 2] = 1.0
    return img
