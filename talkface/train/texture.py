"""Training stage 4 (texture): pairs of aligned crops with their landmark images, and the LSGAN stage
that :func:`talkface.train.loop.run_training` runs (generator, discriminator and losses are in
:mod:`talkface.models.texture`)."""

from __future__ import annotations

import copy
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from talkface.core import media
from talkface.generation.warp import warp_frames
from talkface.models.render import render_batch
from talkface.models.texture import (
    EMA,
    PatchDiscriminator,
    TextureConfig,
    TextureGenerator,
    box_masks,
    ema_decay_at,
    ema_update,
    generator_losses,
    lsgan_discriminator_loss,
    region_boxes,
)
from talkface.train import data as mdata
from talkface.train.loop import Stage, TrainContext, TrainSettings

log = logging.getLogger("talkface.train.texture")


@dataclass
class _Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 aligned crops
    landmarks: np.ndarray  # (T, 68, 2) float32 crop px
    valid: np.ndarray  # (T,) frames with finite landmarks


class CropPairDataset(Dataset):
    """(identity, landmark image, target) triples in [-1, 1], CHW float32, from a prepared dataset.

    Items are (clip, target frame) for every frame of every listed clip (frame counts from the clips'
    records), balanced by speaker when there are several (each speaker's clips repeated in turn up to
    the largest speaker's frame count: :func:`talkface.train.data.balance_by_speaker`). A target frame
    whose landmarks are NaN is replaced by the nearest frame with landmarks.
    """

    def __init__(self, data: str | os.PathLike | mdata.PreparedDataset, clip_ids: list[str],
                 config: TextureConfig, cache_bytes: int = 256 << 20) -> None:
        self.dataset = mdata.open_dataset(data)
        self.config = config
        self.cache_bytes = cache_bytes
        frames = {c: int(self.dataset.record(c).n_frames or 0) for c in clip_ids}
        kept = [c for c in clip_ids if frames[c] >= 2]
        speaker = {c: self.dataset.record(c).speaker for c in kept}
        if len(set(speaker.values())) > 1:  # repeat clips so each speaker has about the same frames
            per_speaker: dict[str, int] = {}
            for c in kept:
                per_speaker[speaker[c]] = per_speaker.get(speaker[c], 0) + frames[c]
            kept = [c for s in dict.fromkeys(speaker[c] for c in kept)
                    for c in _cycle_to([k for k in kept if speaker[k] == s], frames,
                                       mdata.balanced_count(per_speaker[s], per_speaker))]
        self.clip_ids = kept
        counts = np.array([frames[c] for c in self.clip_ids], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._cache: OrderedDict[str, _Clip] = OrderedDict()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        c = int(np.searchsorted(self._starts, index, side="right") - 1)
        return c, int(index - self._starts[c])

    def clip(self, clip_id: str) -> _Clip:
        """Decoded crops and landmarks of one clip, from this process's LRU cache."""
        if clip_id in self._cache:
            self._cache.move_to_end(clip_id)
            return self._cache[clip_id]
        frames = media.read_video(self.dataset.crop_path(clip_id))
        lm = self.dataset.load_clip(clip_id)["landmarks_aligned"].astype(np.float32)
        n = min(len(frames), len(lm))
        size = self.config.image_size
        if frames.shape[1] != size or frames.shape[2] != size:
            raise ValueError(f"{clip_id}: crops are {frames.shape[2]}x{frames.shape[1]}, the texture model "
                             f"is configured for {size}x{size}")
        entry = _Clip(frames[:n], lm[:n], np.isfinite(lm[:n]).all(axis=(1, 2)))
        self._cache[clip_id] = entry
        self._cached_bytes += entry.frames.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.frames.nbytes
        return entry

    def pair_indices(self, clip: _Clip, target: int, rng: np.random.Generator) -> tuple[int, int]:
        """(target frame with landmarks, identity frame != target) for a requested target."""
        if not clip.valid.any():
            raise ValueError("clip has no frame with landmarks")
        valid = np.flatnonzero(clip.valid)
        target = int(valid[np.argmin(np.abs(valid - target))])
        n = len(clip.frames)
        dist = np.abs(np.arange(n) - target)
        far = np.flatnonzero(dist >= self.config.identity_min_gap)
        if len(far):
            identity = int(rng.choice(far))
        else:
            identity = int(np.argmax(dist))  # the farthest frame; n >= 2 so it is not the target
        return target, identity

    def getitem_seeded(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        c, frame = self.locate(index)
        clip = self.clip(self.clip_ids[c])
        target, identity = self.pair_indices(clip, frame, rng)
        sketch = render_batch(clip.landmarks[target][None], self.config.render_settings)[0]
        identity_image, target_image = clip.frames[identity], clip.frames[target]
        base_image = identity_image
        if self.config.base == "warp":
            if not clip.valid[identity]:  # the warp needs the identity's points: the nearest frame with them
                valid = np.flatnonzero(clip.valid)
                identity = int(valid[np.argmin(np.abs(valid - identity))])
                identity_image = clip.frames[identity]
            base_image = next(warp_frames(identity_image, clip.landmarks[identity],
                                          clip.landmarks[target][None]))
        if self.config.colour_jitter:
            identity_image, base_image, target_image = jitter_colours(
                (identity_image, base_image, target_image), self.config.colour_jitter, rng)
        return {
            "identity": _to_tensor(identity_image),
            "base": _to_tensor(base_image),
            "landmark_image": _to_tensor(sketch),
            "target": _to_tensor(target_image),
            "boxes": torch.from_numpy(region_boxes(clip.landmarks[target], self.config.image_size,
                                                   self.config.region_margin)),
            "clip_index": c,
            "target_frame": target,
            "identity_frame": identity,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.getitem_seeded(index, np.random.default_rng(index))


def jitter_colours(images: tuple[np.ndarray, ...], amount: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, ...]:
    """The same random per-channel gain ``1 + U(-amount, amount)`` and offset ``U(-amount/2, amount/2)``
    (in [0, 1] units) applied to every image of ``images`` (HWC uint8)."""
    gain = 1.0 + rng.uniform(-amount, amount, 3)
    offset = rng.uniform(-amount / 2, amount / 2, 3) * 255.0
    return tuple(np.clip(img.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8)
                 for img in images)


def _cycle_to(clip_ids: list[str], frames: dict[str, int], total: int) -> list[str]:
    """``clip_ids`` repeated in turn until their frames reach ``total`` (at least once each)."""
    out, n, i = [], 0, 0
    while n < total or i < len(clip_ids):
        out.append(clip_ids[i % len(clip_ids)])
        n += frames[out[-1]]
        i += 1
    return out


def _add(sums: dict[str, float], key: str, value: float) -> None:
    sums[key] = sums.get(key, 0.0) + value


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> CHW float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def build_stage(data: str | os.PathLike, protocol: str | None, l1_weight: float = 10.0,
                attention_weight: float = 0.1, cache_mb: int = 256, base: str = "warp",
                colour_jitter: float = 0.1) -> TextureStage:
    """The stage ``talkface train texture`` runs (its own options -> :class:`TextureConfig`)."""
    config = TextureConfig(l1_weight=l1_weight, attention_mean_weight=attention_weight, base=base,
                           colour_jitter=colour_jitter)
    return TextureStage(data, protocol, config, cache_bytes=cache_mb << 20)


class TextureStage(Stage):
    """Stage 4 of the paper for :func:`talkface.train.loop.run_training`."""

    name = "texture"

    def __init__(self, data: str | os.PathLike | mdata.PreparedDataset, protocol: str | None = None,
                 config: TextureConfig | None = None, cache_bytes: int = 256 << 20) -> None:
        self.data = data  # opened in setup: building the models needs no dataset
        self.protocol = protocol
        self.config = config or TextureConfig()
        self.cache_bytes = cache_bytes
        self.channels_last = False

    # setup ---------------------------------------------------------------------------------------
    def setup(self, settings: TrainSettings, resume_state: dict[str, Any] | None) -> None:
        self.settings = settings
        self.dataset = mdata.open_dataset(self.data)
        if resume_state is not None:
            self.config = TextureConfig.from_dict(resume_state["config"])
        else:
            self.config.image_size = self.dataset.crop_size  # the model follows the dataset's crop size
            self.config.lr = settings.lr
        self.parts = mdata.training_parts(self.dataset, self.protocol, settings.seed, resume_state)
        self.train_ids = self._with_files(self.parts.train)
        self.val_ids = self._with_files(self.parts.val)
        if not self.train_ids:
            raise ValueError(f"{self.dataset.root}: none of the {len(self.parts.train)} training clips of "
                             f"protocol {self.parts.protocol!r} has its crops and arrays")
        self.channels_last = torch.cuda.is_available() and settings.accelerator in ("auto", "cuda", "gpu")
        self._train = CropPairDataset(self.dataset, self.train_ids, self.config, self.cache_bytes)
        self._val = (CropPairDataset(self.dataset, self.val_ids, self.config, self.cache_bytes)
                     if self.val_ids else None)

    def _with_files(self, clip_ids: list[str]) -> list[str]:
        """Clips whose crops and arrays exist (a missing file would stop training in a worker)."""
        ds = self.dataset
        kept = [c for c in clip_ids if ds.crop_path(c).exists() and ds.clip_path(c).exists()]
        if len(kept) < len(clip_ids):
            log.warning("%d clips of %s have no crops or arrays; training without them",
                        len(clip_ids) - len(kept), self.dataset.root)
        return kept

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def dataset_info(self) -> dict[str, Any]:
        return mdata.dataset_info(self.dataset, self.parts, n_train_clips=len(self.train_ids),
                                  n_val_clips=len(self.val_ids))

    def build_models(self) -> dict[str, torch.nn.Module]:
        models: dict[str, torch.nn.Module] = {
            "generator": TextureGenerator(self.config),
            "discriminator": PatchDiscriminator(self.config),
        }
        if self.config.ema_decay > 0:
            # no optimiser: the loop keeps it frozen and saves it with the others (checkpoint
            # models.generator_ema), and generation loads it in place of the raw generator
            models[EMA] = copy.deepcopy(models["generator"]).requires_grad_(False)
        if self.channels_last:
            models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
        return models

    def build_optimizers(self, models: dict[str, torch.nn.Module], settings: TrainSettings
                         ) -> dict[str, torch.optim.Optimizer]:
        return {k: torch.optim.Adam(m.parameters(), lr=self.config.lr, betas=self.config.betas)
                for k, m in models.items()}

    def train_dataset(self) -> Dataset:
        return self._train

    # step ----------------------------------------------------------------------------------------
    def _inputs(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, ...]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if "base" not in batch and self.config.base == "identity":  # the identity is the base
            batch = {**batch, "base": batch["identity"]}
        return tuple(batch[k].to(device, non_blocking=True).contiguous(memory_format=fmt)
                     for k in ("identity", "landmark_image", "target", "base"))

    @staticmethod
    def eval_generator(ctx: TrainContext) -> torch.nn.Module:
        """The generator validation and generation use: the EMA of the weights when the run keeps one."""
        return ctx.models.get(EMA, ctx.models["generator"])

    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        gen, disc = ctx.models["generator"], ctx.models["discriminator"]
        opt_g, opt_d = ctx.optimizers["generator"], ctx.optimizers["discriminator"]
        identity, sketch, target, base = self._inputs(batch, ctx.fabric.device)
        boxes = batch["boxes"].to(ctx.fabric.device) if "boxes" in batch else None

        out = gen(identity, sketch, base)
        opt_d.zero_grad(set_to_none=True)
        loss_d = lsgan_discriminator_loss(disc(target, sketch), disc(out.frame.detach(), sketch))
        ctx.fabric.backward(loss_d)
        opt_d.step()

        opt_g.zero_grad(set_to_none=True)
        losses = generator_losses(out, target, disc(out.frame, sketch), self.config, boxes)
        ctx.fabric.backward(losses["total"])
        opt_g.step()
        if EMA in ctx.models:
            ema_update(ctx.models[EMA], gen, ema_decay_at(ctx.step + 1, self.config.ema_decay))
        logged = {"d": float(loss_d.detach()), "g": float(losses["total"].detach())}
        logged.update({k: float(losses[k].detach()) for k in ("l1", "l1_mouth", "l1_eyes", "adv", "att_mean")
                       if k in losses})
        return logged

    # validation and images -----------------------------------------------------------------------
    def _val_batches(self, limit: int, batch_size: int):
        data = self._val if self._val is not None else self._train
        n = min(limit, len(data))
        # evenly spread, seeded pairs: the same validation set at every step and on resume
        picks = np.linspace(0, len(data) - 1, n).round().astype(int) if n else np.array([], int)
        for start in range(0, n, batch_size):
            items = [data.getitem_seeded(int(i), np.random.default_rng([1234, int(i)]))
                     for i in picks[start:start + batch_size]]
            yield {k: torch.stack([it[k] for it in items])
                   for k in ("identity", "landmark_image", "target", "boxes", "base")}

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        """L1 and SSIM to the real frame of the generator generation uses (the EMA when kept), the same
        for copying the identity frame (``*_identity_copy``), L1 inside the mouth and eye boxes
        (``l1_mouth*``, ``l1_eyes*``) and, with an EMA, the raw generator's L1 (``l1_raw``)."""
        from skimage.metrics import structural_similarity

        gen = self.eval_generator(ctx)
        raw = ctx.models["generator"] if EMA in ctx.models else None
        to01 = lambda x: ((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy().transpose(0, 2, 3, 1)  # noqa: E731
        sums: dict[str, float] = {}
        count = 0
        for batch in self._val_batches(self.config.val_max_samples, self.settings.batch_size):
            identity, sketch, target, base = self._inputs(batch, ctx.fabric.device)
            masks = box_masks(batch["boxes"].float(), target.shape[-2], target.shape[-1]).numpy()
            real01 = to01(target)
            # the generated frame, and the do-nothing baseline (A = 0: the identity frame copied)
            preds = [("", to01(gen(identity, sketch, base).frame), True),
                     ("_identity_copy", to01(identity), True)]
            if self.config.base == "warp":  # the warp alone (A = 0 with the warped base)
                preds.append(("_warp_copy", to01(base), True))
            if raw is not None:
                preds.append(("_raw", to01(raw(identity, sketch, base).frame), False))
            for suffix, pred, with_ssim in preds:
                err = np.abs(pred - real01).mean(axis=3)  # (N, H, W)
                _add(sums, "l1" + suffix, float(err.mean(axis=(1, 2)).sum()))
                _add(sums, "l1_mouth" + suffix, float((err * masks[:, 0]).sum()))
                _add(sums, "l1_eyes" + suffix, float((err * masks[:, 1:].max(axis=1)).sum()))
                if with_ssim:
                    for p, r in zip(pred, real01, strict=True):
                        _add(sums, "ssim" + suffix, float(structural_similarity(r, p, channel_axis=-1,
                                                                                data_range=1.0)))
            _add(sums, "_mouth_px", float(masks[:, 0].sum()))
            _add(sums, "_eye_px", float(masks[:, 1:].max(axis=1).sum()))
            count += len(real01)
        if not count:
            return {}
        out = {}
        for k, v in sums.items():
            if k.startswith("_"):
                continue
            denom = sums["_mouth_px"] if k.startswith("l1_mouth") else sums["_eye_px"] if k.startswith(
                "l1_eyes") else count
            out[k] = v / max(denom, 1.0)
        return {**out, "n_pairs": float(count)}

    def images(self, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """One row per sample: real | generated | attention | colour, in [0, 1]."""
        batch = next(self._val_batches(4, 4), None)
        if batch is None:
            return {}
        identity, sketch, target, base = self._inputs(batch, ctx.fabric.device)
        out = self.eval_generator(ctx)(identity, sketch, base)
        to01 = lambda x: ((x.float() + 1) / 2).clamp(0, 1)  # noqa: E731
        row = torch.cat([to01(target), to01(out.frame), out.attention.float().expand_as(target),
                         to01(out.colour)], dim=3)
        return {"texture/real|generated|attention|colour": row}
