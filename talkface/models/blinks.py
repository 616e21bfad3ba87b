"""Stage 2 of Sinha et al. (IJCNN 2020): eye blinks from noise, learned without labels.

A recurrent generator maps per-frame noise (plus one per-sequence noise vector, so a sequence has its
own "style") to displacements of the eye and brow points (17..26, 36..47; ``BlinkConfig.points``) from
the clip's open-eye shape, in unit crop coordinates. Why the brows: in the landmarks of real GRID s1
clips the brow points rise 1.2 px (3 standard deviations of their frame-to-frame motion) during a
blink, and the texture stage learned that cue: on held-out clips, real eye motion alone on otherwise
still landmarks gave 2 blinks in the frames where the clips had 11, with the real brow motion added 9
(docs/models.md). Checkpoints saved before hold ``points="eyes"`` (12 points) and generate as before.

It is trained by moment matching: the squared MMD with a multi-bandwidth RBF kernel between generated
and real sequences of ``seq_len`` frames, at two time scales (whole sequences, and
``local_len``-frame sub-windows, which carry the shape and duration of a single blink). Both eyes are
generated together, so they blink together. At generation the generated eyes replace the speech-driven
eye points (:func:`impose_blinks`).

Blink statistics use the eye-aspect-ratio rule (Soukupova and Cech 2016): EAR averaged over both eyes,
a blink is a run of at least ``min_frames`` frames with EAR below ``ear_rel_threshold`` x the sequence's
median EAR (the evaluation's default rule; a fixed ``ear_threshold`` when one is configured), found by
the evaluation's own detector (``talkface.core.face68.detect_blinks``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from talkface.core.face68 import BROWS, EYES, indices
from talkface.store import checkpoints
from talkface.train import data as mdata
from talkface.train.loop import TrainContext, TrainSettings
from talkface.train.settings import config_from_dict

log = logging.getLogger("talkface.models.blinks")


#: The point sets a blink stage can generate, by name (iBUG 68-point indices, 0-based).
POINT_SETS: dict[str, tuple[int, ...]] = {
    "eyes": indices(EYES),
    "eyes+brows": indices(BROWS) + indices(EYES),
}


def point_set(n_or_name: int | str) -> np.ndarray:
    """The landmark indices of a point set, by name or by its size (12: eyes, 22: eyes and brows)."""
    if isinstance(n_or_name, str):
        return np.asarray(POINT_SETS[n_or_name])
    for idx in POINT_SETS.values():
        if len(idx) == n_or_name:
            return np.asarray(idx)
    raise ValueError(f"no blink point set has {n_or_name} points (sets: {sorted(POINT_SETS)})")


@dataclass
class BlinkConfig:
    """Every choice of the blink stage (defaults where the paper is silent)."""

    seq_len: int = 40  # frames per real/generated sequence in the MMD (1.6 s at 25 fps)
    seq_stride: int = 5  # real sequences start every 5 frames of a clip
    local_len: int = 8  # frames per sub-window of the second MMD scale (a blink lasts 2-6 frames)
    local_weight: float = 1.0
    local_samples: int = 384  # sub-windows drawn per side per step (keeps the kernel matrix small)
    noise_dim: int = 16  # per-frame noise
    style_dim: int = 8  # per-sequence noise
    hidden: int = 128
    rnn_layers: int = 2
    bandwidth_multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)  # x the median distance
    bandwidths_seq: list[float] = field(default_factory=list)  # set from the data at setup (stored)
    bandwidths_local: list[float] = field(default_factory=list)
    scale: float = 0.0  # std of the real displacements (unit coords); the net works in these units
    fps: float = 25.0
    # blink rule for the statistics and model selection: EAR below ear_rel_threshold x the sequence's
    # median EAR (the evaluation's default rule, so the stage is selected on what generated videos are
    # scored with), or below the fixed ear_threshold when one is set (checkpoints before 2026-12 did: 0.2)
    ear_threshold: float | None = None
    ear_rel_threshold: float = 0.75
    min_frames: int = 2
    mean_eye: list[list[float]] = field(default_factory=list)  # (n, 2) training mean shape of `points`
    # closure amplitude: generated displacements are multiplied by this at sampling. MMD matches the
    # distribution of eye motion but leaves blinks shallower than real ones (lowest EAR 0.61 x the
    # median against 0.51, docs/models.md), and shallow closures do not survive the texture stage. Each
    # validation picks the factor from ``amplitude_grid`` whose blinks best match the real rate,
    # duration and closure depth (the selection score), and it is saved with the weights.
    amplitude: float = 1.0
    amplitude_grid: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)
    # which points move (POINT_SETS) and from what: "open-eyes", the clip's mean shape over its frames
    # with EAR at least the median (the identity frame is chosen with open eyes, so a displacement of
    # zero is an open eye there), or "mean", the clip's mean over all frames (checkpoints before)
    points: str = "eyes+brows"
    origin: str = "open-eyes"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlinkConfig:
        return config_from_dict(cls, {"points": "eyes", "origin": "mean", **d})  # before: eyes from the mean

    @property
    def n_points(self) -> int:
        return len(POINT_SETS[self.points])


# -------------------------------------------------------------------------------------------------
# blink statistics (EAR rule)


def eye_aspect_ratio(points: np.ndarray) -> np.ndarray:
    """(T, 68, 2) landmarks or (T, n, 2) points of a :data:`POINT_SETS` set -> (T,) EAR averaged over
    both eyes.

    The evaluation's function (:func:`talkface.core.face68.eye_aspect_ratio`), so the blink
    model is measured exactly as generated videos are; a point set is placed at its own indices.
    """
    from talkface.core.face68 import eye_aspect_ratio as ear_of_landmarks

    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[1] != 68:
        full = np.full((len(pts), 68, 2), np.nan)
        full[:, point_set(pts.shape[1])] = pts
        pts = full
    return ear_of_landmarks(pts)


def detect_blinks(ear: np.ndarray, threshold: float | None = 0.2, min_frames: int = 2,
                  rel_threshold: float = 0.75) -> list[tuple[int, int]]:
    """Blinks as (start, end) frame ranges, by the evaluation's own detector.

    The rule lives in :func:`talkface.core.face68.detect_blinks` (runs of at least
    ``min_frames`` frames with EAR below ``threshold``, or below ``rel_threshold`` x the trace's median
    EAR when ``threshold`` is None), so the blink model is checked with exactly the detector that scores
    generated videos.
    """
    from talkface.core.face68 import detect_blinks as blink_events

    ear = np.asarray(ear, dtype=np.float64)
    stats = blink_events(ear, fps=25.0, threshold=threshold, rel_threshold=rel_threshold,
                         min_frames=min_frames)  # fps: unused here
    return [(int(s), int(s + n)) for s, n in zip(stats.starts, stats.lengths, strict=True)]


def blink_statistics(sequences: list[np.ndarray], fps: float, threshold: float | None = 0.2,
                     min_frames: int = 2, rel_threshold: float = 0.75) -> dict[str, float]:
    """Rate (blinks per minute), mean duration (frames) and closure depth over eye-point sequences
    (T_i, 12|68, 2); ``threshold`` None: each sequence's own ``rel_threshold`` x median EAR.

    Closure depth: the median over blinks of the lowest EAR inside the blink divided by the sequence's
    median EAR (0 = fully shut, 1 = no closure).
    """
    n_blinks, durations, depths, total_frames = 0, [], [], 0
    for seq in sequences:
        ear = eye_aspect_ratio(seq)
        found = detect_blinks(ear, threshold, min_frames, rel_threshold)
        n_blinks += len(found)
        durations += [e - s for s, e in found]
        if found:
            median = float(np.nanmedian(ear))
            depths += [float(np.nanmin(ear[s:e])) / median for s, e in found]
        total_frames += len(seq)
    minutes = total_frames / fps / 60.0
    return {"blinks_per_min": n_blinks / max(minutes, 1e-9), "mean_duration_frames":
            float(np.mean(durations)) if durations else float("nan"), "n_blinks": float(n_blinks),
            "closure_depth": float(np.median(depths)) if depths else float("nan")}


# -------------------------------------------------------------------------------------------------
# MMD


def rbf_mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: list[float]) -> torch.Tensor:
    """Biased squared MMD between samples x (N, F) and y (M, F), kernel sum_b exp(-|a-b|^2 / (2 s_b^2))."""
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).pow(2)
    k = sum(torch.exp(-d2 / (2.0 * s * s)) for s in bandwidths)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def median_distance(x: torch.Tensor, max_n: int = 1000) -> float:
    x = x[:max_n]
    d = torch.cdist(x, x)
    return float(d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)].median())


def local_windows(seqs: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T, F) -> (B * (T - length + 1), length * F): every ``length``-frame sub-window, flattened."""
    w = seqs.unfold(1, length, 1)  # (B, T-L+1, F, L)
    return w.permute(0, 1, 3, 2).reshape(-1, length * seqs.shape[-1])


# -------------------------------------------------------------------------------------------------
# model


class BlinkGenerator(nn.Module):
    """Noise -> (B, T, n, 2) displacements of the config's points in unit crop coordinates."""

    def __init__(self, config: BlinkConfig) -> None:
        super().__init__()
        c = self.config = config
        self.rnn = nn.GRU(c.noise_dim + c.style_dim, c.hidden, num_layers=c.rnn_layers, batch_first=True)
        self.head = nn.Linear(c.hidden, c.n_points * 2)
        self.register_buffer("scale", torch.tensor(max(c.scale, 1e-6)))

    def forward(self, noise: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, t, _ = noise.shape
        x = torch.cat([noise, style[:, None].expand(b, t, style.shape[-1])], dim=-1)
        h, _ = self.rnn(x)
        return (self.head(h) * self.scale).reshape(b, t, self.config.n_points, 2)

    def draw(self, batch: int, n_frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.head.weight.device
        c = self.config
        noise = torch.randn(batch, n_frames, c.noise_dim, generator=generator).to(device)
        style = torch.randn(batch, c.style_dim, generator=generator).to(device)
        return self(noise, style)

    @torch.no_grad()
    def sample(self, n_frames: int, fps: float = 25.0, generator_seed: int = 0) -> np.ndarray:
        """(n_frames, n, 2) displacements of the config's points at ``fps`` (unit crop coordinates),
        reproducible by seed.

        The generator runs at its training rate; another ``fps`` is resampled linearly in time.
        """
        gen = torch.Generator().manual_seed(int(generator_seed))
        own = max(1, int(round(n_frames * self.config.fps / fps)))
        out = self.draw(1, own, gen)[0].float().cpu().numpy() * np.float32(self.config.amplitude)
        if own == n_frames:
            return out
        src_t = np.arange(own) / self.config.fps
        dst_t = np.arange(n_frames) / fps
        flat = out.reshape(own, -1)
        res = np.stack([np.interp(dst_t, src_t, flat[:, j]) for j in range(flat.shape[1])], axis=1)
        return res.reshape(n_frames, self.config.n_points, 2).astype(np.float32)


def impose_blinks(landmarks: np.ndarray, eye_displacements: np.ndarray, mean_eye: np.ndarray | None = None
                  ) -> np.ndarray:
    """Replace the generated points (eyes, or eyes and brows: told by the displacements' size) of
    (T, 68, 2) landmarks by a mean shape + the generated displacements.

    ``mean_eye`` defaults to the mean over time of the landmarks' own points (the speech-driven eyes
    and brows barely move, so this keeps the face's shape and takes the motion from the generator).
    """
    out = np.array(landmarks, dtype=np.float32, copy=True)
    disp = np.asarray(eye_displacements, np.float32)
    idx = point_set(disp.shape[1])
    base = out[:, idx].mean(axis=0) if mean_eye is None else np.asarray(mean_eye, np.float32)
    out[:, idx] = base[None] + disp[: len(out)]
    return out


# -------------------------------------------------------------------------------------------------
# data and stage


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


def blink_model_from_state(state: dict[str, Any], device: str | torch.device = "cpu") -> BlinkGenerator:
    """The generator (eval mode) of a loaded blinks checkpoint's state dict."""
    model = BlinkGenerator(BlinkConfig.from_dict(state["config"]))
    model.load_state_dict(state["models"]["blinks"])
    return model.to(device).eval()


def load_blink_stage(source: str | Path, device: str | torch.device = "cpu") -> BlinkGenerator:
    """The trained generator (eval mode); ``.sample(n_frames, fps, generator_seed)`` -> (T, n, 2).

    ``source``: a ``.pt`` file (exactly that one) or a folder holding a blinks run, where the store's
    policy picks the file (``best.pt``: the validation whose generated blink rate and duration were
    closest to the training data's, see ``selection_score``).
    """
    return blink_model_from_state(checkpoints.load_stage(source, "blinks").state, device)
