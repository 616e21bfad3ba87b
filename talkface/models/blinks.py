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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from talkface.core.face68 import BROWS, EYES, indices
from talkface.models.config import config_from_dict
from talkface.store import checkpoints

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


#: Generation holds each closure for this many frames either side, at the stage's own rate
#: (:func:`hold_closures`).
HOLD_FRAMES = 1
HOLD_RULE = (f"each generated frame takes the eye and brow pose of the most closed frame within "
             f"+-{HOLD_FRAMES} frame(s) at the blink stage's rate (closure: upper-lid points 37, 38, 43, 44 "
             "moved down relative to lower-lid points 40, 41, 46, 47)")
_UPPER_LIDS, _LOWER_LIDS = (37, 38, 43, 44), (41, 40, 47, 46)


def closure(displacements: np.ndarray) -> np.ndarray:
    """(T,) how far (T, n, 2) eye-point displacements close the eyes: the upper lids' mean downward (image
    y) displacement minus the lower lids'; 0 for the open-eye origin, larger when more closed."""
    idx = list(point_set(displacements.shape[1]))
    upper = [idx.index(p) for p in _UPPER_LIDS]
    lower = [idx.index(p) for p in _LOWER_LIDS]
    return displacements[:, upper, 1].mean(axis=1) - displacements[:, lower, 1].mean(axis=1)


def hold_closures(displacements: np.ndarray, frames: int = HOLD_FRAMES) -> np.ndarray:
    """Each frame of (T, n, 2) displacements replaced by the most closed frame (:func:`closure`) within
    ``frames`` either side: every closure lasts ``2 * frames`` frames longer, and the open stretches
    between them stay as drawn.

    Why: the texture stage draws part of a closure only, so the evaluation's detector sees the eye
    below its threshold for fewer frames than the landmarks are: on 14 held-out GRID s1 clips (the
    unseen-identity benchmark's 45-minute stages) blinks in generated frames lasted 0.13 s against 0.20 s
    in the real clips; held by one frame, 0.18 s, at the same calibrated amplitude (docs/models.md,
    "Blinks held")."""
    disp = np.asarray(displacements)
    if frames <= 0 or len(disp) < 2:
        return disp
    c = closure(disp)
    out = disp.copy()
    for t in range(len(disp)):
        lo, hi = max(0, t - frames), min(len(disp), t + frames + 1)
        out[t] = disp[lo + int(np.argmax(c[lo:hi]))]
    return out


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
    def sample(self, n_frames: int, fps: float = 25.0, generator_seed: int = 0,
               hold: int = HOLD_FRAMES) -> np.ndarray:
        """(n_frames, n, 2) displacements of the config's points at ``fps`` (unit crop coordinates),
        reproducible by seed; each closure held ``hold`` frames either side (:func:`hold_closures`).

        The generator runs at its training rate; another ``fps`` is resampled linearly in time.
        """
        gen = torch.Generator().manual_seed(int(generator_seed))
        own = max(1, int(round(n_frames * self.config.fps / fps)))
        out = self.draw(1, own, gen)[0].float().cpu().numpy() * np.float32(self.config.amplitude)
        out = hold_closures(out, hold)
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
