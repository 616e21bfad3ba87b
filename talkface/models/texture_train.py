"""Training the texture stage: a crop-decoding dataset and the :class:`TextureStage` for run_training.

Data: one item is a (target frame, identity frame) pair from one clip of the prepared store. The
aligned crops (``crops/<id>.mp4``) are decoded in DataLoader workers, a clip at a time, and kept in a
per-worker LRU cache bounded in bytes, so no process ever holds the whole dataset. The target frame's
``landmarks_aligned`` are rendered on the fly (talkface.models.render). The identity frame comes from
another time of the same clip, at least ``identity_min_gap`` frames away from the target, drawn with
the seeded per-item generator of the training loop, so the pairs do not depend on worker count.

Step: one discriminator update (LSGAN on real vs detached fake, conditioned on the landmark image),
then one generator update (LSGAN + L1 + attention regularisers; weights in TextureConfig). Under Fabric
``bf16-mixed`` the forward passes run in bf16 autocast; losses are computed in float32. On CUDA the
models and inputs use channels_last (faster convolutions with cuDNN).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from talkface.models.fabric_loop import Stage, TrainContext, TrainSettings, load_checkpoint
from talkface.models.render import render_batch
from talkface.models.texture import (
    PatchDiscriminator,
    TextureConfig,
    TextureGenerator,
    generator_losses,
    lsgan_discriminator_loss,
)
from talkface.preprocess import media
from talkface.preprocess.store import DatasetStore

SSIM_VARIANT = "skimage structural_similarity, 7x7 uniform window, colour (channel mean), data_range 1, [0,1]"


# -------------------------------------------------------------------------------------------------
# which clips


def select_clips(store: DatasetStore, part: str, split: str = "seen", seed: int = 0) -> list[str]:
    """Clip ids of ``part`` (train | val | test) of ``split`` that have crops and arrays.

    The part assignment (and the seeded fallback when a store has no val clips) is models.data's, so
    the texture and landmark stages validate on the same clips.
    """
    from talkface.models.data import select_clips as parts_of

    ids = parts_of(store, split, seed)[part]
    return [c for c in ids if store.crop_path(c).exists() and store.clip_path(c).exists()]


# -------------------------------------------------------------------------------------------------
# dataset


@dataclass
class _Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 aligned crops
    landmarks: np.ndarray  # (T, 68, 2) float32 crop px
    valid: np.ndarray  # (T,) frames with finite landmarks


class CropPairDataset(Dataset):
    """(identity, landmark image, target) triples in [-1, 1], CHW float32, from a prepared store.

    Items are (clip, target frame) for every frame of every listed clip (frame counts from the
    manifest). A target frame whose landmarks are NaN is replaced by the nearest frame with landmarks.
    """

    def __init__(self, root: str | os.PathLike, clip_ids: list[str], config: TextureConfig,
                 cache_bytes: int = 256 << 20) -> None:
        self.store = DatasetStore(Path(root))
        self.config = config
        self.cache_bytes = cache_bytes
        df = self.store.read_manifest().set_index("clip_id")
        self.clip_ids = [c for c in clip_ids if int(df.loc[c, "n_frames"]) >= 2]
        counts = np.array([int(df.loc[c, "n_frames"]) for c in self.clip_ids], dtype=np.int64)
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
        frames = media.read_video(self.store.crop_path(clip_id))
        lm = self.store.load_clip(clip_id)["landmarks_aligned"].astype(np.float32)
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
        return {
            "identity": _to_tensor(clip.frames[identity]),
            "landmark_image": _to_tensor(sketch),
            "target": _to_tensor(clip.frames[target]),
            "clip_index": c,
            "target_frame": target,
            "identity_frame": identity,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.getitem_seeded(index, np.random.default_rng(index))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> CHW float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


# -------------------------------------------------------------------------------------------------
# the stage


class TextureStage(Stage):
    """Stage 4 of the paper for :func:`talkface.models.fabric_loop.run_training`."""

    name = "texture"

    def __init__(self, data: str | os.PathLike, split: str | None = None,
                 config: TextureConfig | None = None, cache_bytes: int = 256 << 20) -> None:
        self.data = Path(data)
        self.split = split
        self.config = config or TextureConfig()
        self.cache_bytes = cache_bytes
        self.channels_last = False

    # setup ---------------------------------------------------------------------------------------
    def setup(self, settings: TrainSettings, resume_state: dict[str, Any] | None) -> None:
        self.settings = settings
        self.store = DatasetStore(self.data)
        ds_settings = self.store.read_settings() or {}
        if resume_state is not None:
            self.config = TextureConfig.from_dict(resume_state["config"])
        else:
            crop = ds_settings.get("crop_size")
            if crop and int(crop) != self.config.image_size:
                self.config.image_size = int(crop)  # the model follows the dataset's crop size
            self.config.lr = settings.lr
        self.train_ids = select_clips(self.store, "train", self.split or "seen", settings.seed)
        self.val_ids = select_clips(self.store, "val", self.split or "seen", settings.seed)
        if not self.train_ids:
            raise ValueError(f"{self.data}: no usable training clips (status ok/partial with crops)")
        self.channels_last = torch.cuda.is_available() and settings.accelerator in ("auto", "cuda", "gpu")
        self._train = CropPairDataset(self.data, self.train_ids, self.config, self.cache_bytes)
        self._val = (CropPairDataset(self.data, self.val_ids, self.config, self.cache_bytes)
                     if self.val_ids else None)

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def dataset_info(self) -> dict[str, Any]:
        return {"root": str(self.data), "split": self.split, "settings": self.store.read_settings(),
                "train_clips": len(self.train_ids), "val_clips": len(self.val_ids)}

    def build_models(self) -> dict[str, torch.nn.Module]:
        models: dict[str, torch.nn.Module] = {
            "generator": TextureGenerator(self.config),
            "discriminator": PatchDiscriminator(self.config),
        }
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
        return tuple(batch[k].to(device, non_blocking=True).contiguous(memory_format=fmt)
                     for k in ("identity", "landmark_image", "target"))

    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        gen, disc = ctx.models["generator"], ctx.models["discriminator"]
        opt_g, opt_d = ctx.optimizers["generator"], ctx.optimizers["discriminator"]
        identity, sketch, target = self._inputs(batch, ctx.fabric.device)

        out = gen(identity, sketch)
        opt_d.zero_grad(set_to_none=True)
        loss_d = lsgan_discriminator_loss(disc(target, sketch), disc(out.frame.detach(), sketch))
        ctx.fabric.backward(loss_d)
        opt_d.step()

        opt_g.zero_grad(set_to_none=True)
        losses = generator_losses(out, target, disc(out.frame, sketch), self.config)
        ctx.fabric.backward(losses["total"])
        opt_g.step()
        return {"d": float(loss_d.detach()), "g": float(losses["total"].detach()),
                "l1": float(losses["l1"].detach()), "adv": float(losses["adv"].detach()),
                "att_mean": float(losses["att_mean"].detach())}

    # validation and images -----------------------------------------------------------------------
    def _val_batches(self, limit: int, batch_size: int):
        data = self._val if self._val is not None else self._train
        n = min(limit, len(data))
        # evenly spread, seeded pairs: the same validation set at every step and on resume
        picks = np.linspace(0, len(data) - 1, n).round().astype(int) if n else np.array([], int)
        for start in range(0, n, batch_size):
            items = [data.getitem_seeded(int(i), np.random.default_rng([1234, int(i)]))
                     for i in picks[start:start + batch_size]]
            yield {k: torch.stack([it[k] for it in items]) for k in ("identity", "landmark_image", "target")}

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        from skimage.metrics import structural_similarity

        gen = ctx.models["generator"]
        to01 = lambda x: ((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy().transpose(0, 2, 3, 1)  # noqa: E731
        sums = {"l1": 0.0, "ssim": 0.0, "l1_identity_copy": 0.0, "ssim_identity_copy": 0.0}
        count = 0
        for batch in self._val_batches(self.config.val_max_samples, self.settings.batch_size):
            identity, sketch, target = self._inputs(batch, ctx.fabric.device)
            real01 = to01(target)
            # the generated frame, and the do-nothing baseline (A = 0: the identity frame copied)
            for suffix, pred in (("", to01(gen(identity, sketch).frame)), ("_identity_copy", to01(identity))):
                sums["l1" + suffix] += float(np.abs(pred - real01).mean(axis=(1, 2, 3)).sum())
                for p, r in zip(pred, real01, strict=True):
                    sums["ssim" + suffix] += float(structural_similarity(r, p, channel_axis=-1,
                                                                         data_range=1.0))
            count += len(real01)
        if not count:
            return {}
        return {**{k: v / count for k, v in sums.items()}, "n_pairs": float(count)}

    def images(self, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """One row per sample: real | generated | attention | colour, in [0, 1]."""
        batch = next(self._val_batches(4, 4), None)
        if batch is None:
            return {}
        identity, sketch, target = self._inputs(batch, ctx.fabric.device)
        out = ctx.models["generator"](identity, sketch)
        to01 = lambda x: ((x.float() + 1) / 2).clamp(0, 1)  # noqa: E731
        row = torch.cat([to01(target), to01(out.frame), out.attention.float().expand_as(target),
                         to01(out.colour)], dim=3)
        return {"texture/real|generated|attention|colour": row}


# -------------------------------------------------------------------------------------------------
# loading for generation


def load_texture_stage(path: str | os.PathLike, device: str | torch.device = "cpu"
                       ) -> tuple[TextureGenerator, TextureConfig, dict[str, Any]]:
    """The generator of a texture checkpoint (eval mode), its config and the checkpoint's header."""
    ckpt = load_checkpoint(path, map_location="cpu")
    if ckpt["stage"] != "texture":
        raise ValueError(f"{path} is a '{ckpt['stage']}' checkpoint, not a texture one")
    config = TextureConfig.from_dict(ckpt["config"])
    gen = TextureGenerator(config)
    gen.load_state_dict(ckpt["models"]["generator"])
    gen.to(device).eval()
    header = {k: ckpt.get(k) for k in ("step", "seed", "talkface_version", "dataset")}
    return gen, config, header
