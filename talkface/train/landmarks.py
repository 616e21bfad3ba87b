"""Training stage 1 (speech to landmarks): its dataset of feature windows, validation on whole clips,
and the stage that :func:`talkface.train.loop.run_training` runs (the network and loss are in
:mod:`talkface.models.speech_to_landmarks`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from talkface.models.speech_to_landmarks import (
    FEATURE_NORMS,
    GAIN_GRID,
    LandmarkConfig,
    SpeechToLandmarks,
    augment_voice,
    landmark_errors,
    landmark_loss,
    utterance_normalised,
    with_gain,
)
from talkface.train import data as mdata
from talkface.train.loop import TrainContext, TrainSettings


def lmd_mouth_centroid_mean(preds: list[np.ndarray], targets: list[np.ndarray], valids: list[np.ndarray],
                            crop_size: int) -> float:
    """The evaluation metric ``lmd_mouth:centroid-mean`` (:func:`talkface.core.face68.lmd`) per
    clip on the valid frames, in crop px, averaged over clips as the evaluation's summary does."""
    from talkface.core.face68 import lmd

    scores = [lmd(p[v] * crop_size, t[v] * crop_size, points="mouth", reduction="mean")
              for p, t, v in zip(preds, targets, valids, strict=True) if v.any()]
    return float(np.mean(scores)) if scores else float("nan")


def fit_motion_gain(preds: list[np.ndarray], targets: list[np.ndarray], valids: list[np.ndarray],
                    mean_face: np.ndarray, crop_size: int) -> tuple[float, float]:
    """(gain, its mean mouth LMD in crop px): the gain of :data:`GAIN_GRID` whose damped predictions
    (:func:`with_gain`) have the lowest :func:`lmd_mouth_centroid_mean` over the clips (ties: the larger
    gain, the livelier mouth); 1 when no clip has a valid frame."""
    scores = {g: lmd_mouth_centroid_mean([with_gain(p, mean_face, g) for p in preds], targets, valids,
                                         crop_size) for g in GAIN_GRID}
    if not all(np.isfinite(v) for v in scores.values()):
        return 1.0, scores[1.0]
    best = min(scores, key=lambda g: (round(scores[g], 6), -g))
    return best, scores[best]


def build_stage(data: str | Path, protocol: str | None, window_len: int = 32, rnn: str = "gru",
                mouth_weight: float = 4.0, temporal_weight: float = 1.0,
                feature_norm: str = "utterance", voice_augment: bool = True) -> LandmarkStage:
    """The stage ``talkface train landmarks`` runs (its own options -> :class:`LandmarkConfig`)."""
    config = LandmarkConfig(window_len=window_len, rnn=rnn, mouth_weight=mouth_weight,
                            temporal_weight=temporal_weight, feature_norm=feature_norm)
    if not voice_augment:
        config.voice_warp, config.freq_masks = (1.0, 1.0), 0
    return LandmarkStage(data, protocol, config)


class LandmarkStage(mdata.DatasetStage):
    """Training stage for :class:`SpeechToLandmarks` over a prepared store."""

    name = "landmarks"

    config_type = LandmarkConfig

    def __init__(self, data: str | Path | mdata.PreparedDataset, protocol: str | None = None,
                 config: LandmarkConfig | None = None, max_train_clips: int | None = None) -> None:
        super().__init__(data, protocol, config)
        self.max_train_clips = max_train_clips

    def setup(self, settings: TrainSettings, resume_state: dict[str, Any] | None) -> None:
        self.resolve_parts(settings, resume_state)
        train_ids = self.parts.train[: self.max_train_clips] if self.max_train_clips else self.parts.train
        self.train_clips = mdata.load_clips(self.dataset, train_ids)
        self.val_clips = mdata.load_clips(self.dataset, self.parts.val)
        #: a single usable clip validates on itself: the motion gain is then not fitted (stays 1)
        self.val_is_train = set(self.parts.val) <= set(self.parts.train)
        if not self.train_clips:
            raise ValueError(f"{self.dataset.root}: none of the {len(train_ids)} training clips can be read")
        first = self.train_clips[0]
        if resume_state is not None:
            self.config = LandmarkConfig.from_dict(resume_state["config"])
        else:
            self.config.feature_window, self.config.feature_dim = first.features.shape[1:]
            self.config.feature_backend = self.dataset.info.feature_backend.name
            self.config.crop_size = first.crop_size
        if (self.config.feature_window, self.config.feature_dim) != first.features.shape[1:]:
            raise ValueError(f"the checkpoint expects {self.config.feature_window}x{self.config.feature_dim} "
                             f"features, the dataset has {first.features.shape[1:]}")
        if self.config.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm {self.config.feature_norm!r}: choose one of "
                             f"{', '.join(FEATURE_NORMS)}")
        if self.config.feature_norm == "utterance":  # the whole clip's statistics, as generation sees them
            for clip in (*self.train_clips, *self.val_clips):
                clip.features = utterance_normalised(clip.features)
        self.mean_face = mdata.mean_face(self.train_clips)
        self.feature_mean, self.feature_std = mdata.feature_stats(self.train_clips)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def dataset_info(self) -> dict[str, Any]:
        return mdata.dataset_info(self.dataset, self.parts, n_train_clips=len(self.train_clips),
                                  n_val_clips=len(self.val_clips))

    def build_models(self) -> dict[str, nn.Module]:
        model = SpeechToLandmarks(self.config)
        model.mean_face.copy_(torch.from_numpy(self.mean_face))
        model.feature_mean.copy_(torch.from_numpy(self.feature_mean))
        model.feature_std.copy_(torch.from_numpy(self.feature_std))
        return {"landmarks": model}

    def build_optimizers(self, models: dict[str, nn.Module], settings: TrainSettings
                         ) -> dict[str, torch.optim.Optimizer]:
        return {"landmarks": torch.optim.Adam(models["landmarks"].parameters(), lr=settings.lr,
                                              weight_decay=self.config.weight_decay)}

    def train_dataset(self) -> Dataset:
        return VoiceAugmentedWindows(self.train_clips, self.config.window_len, self.config.window_stride,
                                     tuple(self.config.voice_warp), self.config.freq_masks)

    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        model, opt = ctx.models["landmarks"], ctx.optimizers["landmarks"]
        opt.zero_grad(set_to_none=True)
        pred = model(batch["features"])
        losses = landmark_loss(pred.float(), batch["landmarks"], batch["valid"], self.config.mouth_weight,
                               self.config.temporal_weight, self.config.opening_weight)
        ctx.fabric.backward(losses["loss"])
        opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        """:func:`evaluate_clips` on the held-out clips, and the motion gain fitted there
        (:func:`fit_motion_gain`), set in the model (so saved with it) and reported as ``motion_gain``
        with its ``lmd_mouth_centroid_mean_at_gain``. Not fitted when validation runs on training clips."""
        model = ctx.models["landmarks"]
        return evaluate_clips(model, self.val_clips, self.config.crop_size, next(model.parameters()).device,
                              fit_gain=not self.val_is_train)

    def images(self, ctx: TrainContext) -> dict[str, torch.Tensor]:
        if not self.val_clips:
            return {}
        model = ctx.models["landmarks"]
        clip = self.val_clips[0]
        device = next(model.parameters()).device
        pred = model(torch.from_numpy(clip.features)[None].to(device))[0].float().cpu().numpy()
        frames = np.linspace(0, len(pred) - 1, num=min(8, len(pred))).astype(int)
        imgs = [render_points([clip.landmarks[i], pred[i]], 96) for i in frames]
        return {"val/landmarks_real_green_pred_red": torch.from_numpy(np.stack(imgs))}


class VoiceAugmentedWindows(mdata.WindowDataset):
    """The training windows, each window's features as another voice might give them
    (:func:`talkface.models.speech_to_landmarks.augment_voice`), drawn from the loop's seeded stream so a
    resumed run sees the same windows."""

    def __init__(self, clips: list[mdata.ClipArrays], length: int, stride: int, warp: tuple[float, float],
                 freq_masks: int) -> None:
        super().__init__(clips, length, stride)
        self.warp, self.freq_masks = warp, freq_masks

    def getitem_seeded(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        item = self[index]
        if self.warp[1] > self.warp[0] or self.freq_masks:
            feats = augment_voice(item["features"].numpy(), rng, self.warp, self.freq_masks)
            item["features"] = torch.from_numpy(feats)
        return item


def evaluate_clips(model: nn.Module, clips: list[mdata.ClipArrays], crop_size: int,
                   device: torch.device | str = "cpu", fit_gain: bool = False) -> dict[str, float]:
    """Validation numbers of the model on whole clips, and of the mean face (mouth held still) under
    ``baseline_*``: ``point_error_face``, ``point_error_mouth`` (:func:`landmark_errors`) and
    ``lmd_mouth_centroid_mean`` (:func:`lmd_mouth_centroid_mean`), all in crop px, of the model's raw
    output (gain 1). With ``fit_gain``, also the motion gain fitted on these clips (set in the model)."""
    if not clips:
        return {}
    preds, targets, valids = [], [], []
    for clip in clips:
        out = model(torch.from_numpy(clip.features)[None].to(device))[0].float().cpu().numpy()
        preds.append(out)
        targets.append(clip.landmarks)
        valids.append(clip.valid)
    mean = getattr(model, "module", model).mean_face.detach().float().cpu().numpy()
    still = [np.broadcast_to(mean, p.shape) for p in preds]
    pred, target, valid = np.concatenate(preds), np.concatenate(targets), np.concatenate(valids)
    ours = landmark_errors(pred, target, valid, crop_size)
    ours["lmd_mouth_centroid_mean"] = lmd_mouth_centroid_mean(preds, targets, valids, crop_size)
    base = landmark_errors(np.concatenate(still), target, valid, crop_size)
    base["lmd_mouth_centroid_mean"] = lmd_mouth_centroid_mean(still, targets, valids, crop_size)
    if fit_gain:
        gain, at_gain = fit_motion_gain(preds, targets, valids, mean, crop_size)
        getattr(model, "module", model).motion_gain.fill_(gain)
        ours.update(motion_gain=gain, lmd_mouth_centroid_mean_at_gain=at_gain)
    return {**ours, **{f"baseline_{k}": v for k, v in base.items()}}


def render_points(point_sets: list[np.ndarray], size: int) -> np.ndarray:
    """(3, size, size) float image with each (68, 2) unit point set drawn as 2x2 dots (green, red, ...)."""
    colours = [(0.1, 0.9, 0.1), (0.95, 0.15, 0.1), (0.2, 0.4, 1.0)]
    img = np.zeros((3, size, size), np.float32)
    for k, pts in enumerate(point_sets):
        xy = np.clip(np.round(np.asarray(pts) * (size - 2)).astype(int), 0, size - 2)
        for c in range(3):
            for dx in (0, 1):
                for dy in (0, 1):
                    img[c, xy[:, 1] + dy, xy[:, 0] + dx] = colours[k % len(colours)][c]
    return img
