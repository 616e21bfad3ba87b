"""Texture stage (Sinha et al., IJCNN 2020, stage 4): attention-based LSGAN generator and discriminator.

The generator sees the identity crop and a sketch of the target landmarks (talkface.models.render)
and predicts an attention map A (sigmoid) and a colour map C (tanh); the frame is
``A * C + (1 - A) * identity``, so pixels the pose does not change are copied from the identity
image, which is what keeps the identity (GANimation, Pumarola et al. 2018, uses the same
composition). Images are in [-1, 1], NCHW.

Where the paper is silent the choices are ours and live in :class:`TextureConfig` (saved in every
checkpoint): a pix2pix-style U-Net with stride-2 4x4 convolutions, instance norm and skip
connections, residual blocks at the bottleneck; a 70x70 PatchGAN discriminator on (frame, landmark
image); LSGAN losses (real target 1, fake 0); L1 reconstruction; GANimation's attention regularisers
(mean of A, total variation of A).

Training (:class:`TextureStage` for :func:`talkface.train.loop.run_training`). Data: one
item is a (target frame, identity frame) pair from one clip of the prepared dataset. The aligned
crops (``crops/<id>.mp4``) are decoded in DataLoader workers, a clip at a time, and kept in a
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

import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkface.core.face68 import LEFT_EYE, MOUTH, RIGHT_EYE, indices
from talkface.models.config import config_from_dict
from talkface.models.render import RenderSettings
from talkface.store import checkpoints

log = logging.getLogger("talkface.models.texture")


@dataclass
class TextureConfig:
    """Every architectural and loss choice of the texture stage (the paper gives none of these)."""

    image_size: int = 128
    image_channels: int = 3
    landmark_colour: bool = True  # per-part RGB sketch (3 channels) or white on black (1 channel)
    landmark_thickness: int | None = None  # None: 1 px per 128 px of crop
    # generator: encoder widths, one stride-2 4x4 conv each (128 -> 64 -> 32 -> 16 -> 8 -> 4)
    gen_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    gen_res_blocks: int = 3  # residual blocks (3x3, instance norm) at the 4x4 bottleneck
    # discriminator: 70x70 PatchGAN layout (pix2pix) at half its widths: C32-C64-C128 stride 2, C256
    # stride 1, 1-channel head (the full widths cost more than the generator)
    disc_widths: tuple[int, ...] = (32, 64, 128, 256)
    # colour head: True (default) predicts C = clamp(identity + tanh(head)) with the head initialised at
    # zero, so the untrained generator returns the identity frame exactly (the still-frame baseline) and
    # training can only move away from it where that lowers the loss; False is GANimation's absolute
    # C = tanh(head) (what checkpoints written before this field existed hold)
    colour_residual: bool = True
    # losses
    l1_weight: float = 10.0  # L1 between generated and real frame
    # L1 inside boxes around the target's mouth (points 48-67) and each eye (36-41, 42-47), each box
    # widened by region_margin x its size on every side (at least 2 px); a mean over the box pixels, so
    # these small regions weigh far more per pixel than in the whole-frame L1
    mouth_l1_weight: float = 10.0
    eye_l1_weight: float = 10.0
    region_margin: float = 0.3
    adv_weight: float = 1.0  # LSGAN generator term
    attention_mean_weight: float = 0.1  # GANimation lambda_A: keeps A from saturating to 1
    attention_tv_weight: float = 1e-4  # total variation (mean squared neighbour difference) of A
    # optimiser (pix2pix / LSGAN defaults)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    # data: the identity frame is drawn from the same clip at least this many frames from the target
    # (never the target itself; a shorter clip uses its farthest frame)
    identity_min_gap: int = 5
    val_max_samples: int = 256  # validation L1/SSIM over at most this many (seeded) val pairs
    # exponential moving average of the generator's weights (0: none), the generator used for validation
    # and generation; decay min(ema_decay, (1 + step) / (10 + step)) so short runs average recent steps
    ema_decay: float = 0.999
    # what the generator edits: "identity" (the paper: the identity frame; the output is
    # A * C + (1 - A) * identity) or "warp" (the identity frame warped to the target landmarks,
    # talkface.generation.warp, piecewise-affine with the mouth-cavity rule; the output is
    # A * C + (1 - A) * warped, so what warping already explains is kept and the generator only adds
    # what warping cannot do: the mouth interior, shading). "warp" animates faces the stage never saw.
    base: str = "identity"
    # colour augmentation in training (0: none): per-channel gain 1 + U(-j, j) and offset U(-j/2, j/2)
    # (in [0, 1] units), the same for the identity, base and target images of one item, so the stage
    # does not learn one person's skin and lighting
    colour_jitter: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def render_settings(self) -> RenderSettings:
        return RenderSettings(
            size=self.image_size, colour=self.landmark_colour, thickness=self.landmark_thickness
        )

    @property
    def landmark_channels(self) -> int:
        return self.render_settings.channels

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gen_widths"] = list(self.gen_widths)
        d["disc_widths"] = list(self.disc_widths)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextureConfig:
        # A config saved before a field existed describes a model trained without it.
        d = {**LEGACY_DEFAULTS, **d}
        return config_from_dict(cls, d)


# What a saved config that lacks these fields was trained with (checkpoints older than the fields).
LEGACY_DEFAULTS: dict[str, Any] = {"colour_residual": False, "mouth_l1_weight": 0.0, "eye_l1_weight": 0.0,
                                   "ema_decay": 0.0, "base": "identity", "colour_jitter": 0.0}
BASES = ("identity", "warp")


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance norm with a per-channel affine, as GroupNorm with one group per channel.

    The same normalisation as ``nn.InstanceNorm2d(affine=True)`` (statistics per sample and channel
    over H, W), but PyTorch's GroupNorm kernel is faster on CPU (docs/texture_generate.md) and keeps
    channels_last.
    """
    return nn.GroupNorm(channels, channels)


def _down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(instance_norm(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
        instance_norm(cout),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, 1, 1, bias=False),
            instance_norm(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False),
            instance_norm(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TextureOutput(NamedTuple):
    """A tuple (not a dataclass) so DDP and Fabric's precision wrappers see the tensors inside."""

    frame: torch.Tensor  # (N, 3, H, W) in [-1, 1]
    attention: torch.Tensor  # (N, 1, H, W) in [0, 1]
    colour: torch.Tensor  # (N, 3, H, W) in [-1, 1]


class TextureGenerator(nn.Module):
    """U-Net on concat(identity, landmark image) (with ``base="warp"``: concat(warped, landmark image,
    identity)) with an attention head and a colour head."""

    def __init__(self, config: TextureConfig) -> None:
        super().__init__()
        if config.base not in BASES:
            raise ValueError(f"texture base {config.base!r}: choose one of {', '.join(BASES)}")
        self.config = config
        widths = list(config.gen_widths)
        cin = config.image_channels * (2 if config.base == "warp" else 1) + config.landmark_channels
        self.down = nn.ModuleList()
        prev = cin
        for i, w in enumerate(widths):
            self.down.append(_down(prev, w, norm=i > 0))
            prev = w
        self.bottleneck = nn.Sequential(*[ResBlock(widths[-1]) for _ in range(config.gen_res_blocks)])
        self.up = nn.ModuleList()
        # decoder mirrors the encoder; each step sees the previous output concatenated with the skip
        for i in range(len(widths) - 1, 0, -1):
            up_in = widths[i] if i == len(widths) - 1 else widths[i] * 2
            self.up.append(_up(up_in, widths[i - 1]))
        last = widths[0] * 2
        self.up_final = _up(last, widths[0])
        head_in = widths[0] + cin  # full-resolution features plus the raw inputs
        self.colour_head = nn.Conv2d(head_in, config.image_channels, 3, 1, 1)
        self.attention_head = nn.Conv2d(head_in, 1, 3, 1, 1)
        if config.colour_residual:
            # C = identity + tanh(0) at step 0: the frame is the identity exactly, whatever A is
            nn.init.zeros_(self.colour_head.weight)
            nn.init.zeros_(self.colour_head.bias)

    def forward(self, identity: torch.Tensor, landmark_image: torch.Tensor,
                base: torch.Tensor | None = None) -> TextureOutput:
        """``base``: the identity warped to the target landmarks, required with ``base="warp"`` (the
        image the output edits); ignored otherwise (the identity frame is the base)."""
        if self.config.base == "warp":
            if base is None:
                raise ValueError("this texture stage edits the warped identity: pass base=<warped frames>")
            x = torch.cat([base, landmark_image, identity], dim=1)
        else:
            base = identity
            x = torch.cat([identity, landmark_image], dim=1)
        skips = []
        h = x
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        h = self.bottleneck(h)
        for j, layer in enumerate(self.up):
            if j > 0:
                h = torch.cat([h, skips[-1 - j]], dim=1)
            h = layer(h)
        h = torch.cat([h, skips[0]], dim=1)
        h = self.up_final(h)
        h = torch.cat([h, x], dim=1)
        colour = torch.tanh(self.colour_head(h))
        if self.config.colour_residual:
            colour = (base + colour).clamp(-1.0, 1.0)
        attention = torch.sigmoid(self.attention_head(h))
        frame = composite(attention, colour, base)
        return TextureOutput(frame=frame, attention=attention, colour=colour)


def composite(attention: torch.Tensor, colour: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """``A * C + (1 - A) * identity``: attention picks generated colour, else keeps the identity pixel.

    Written ``identity + A * (C - identity)`` (the same value), which is the identity bit for bit where
    ``C`` equals it, so a residual colour head at zero reproduces the identity frame exactly.
    """
    return identity + attention * (colour - identity)


class PatchDiscriminator(nn.Module):
    """pix2pix 70x70 PatchGAN on concat(frame, landmark image): one realness score per patch.

    At 128x128 the output is (N, 1, 14, 14).
    """

    def __init__(self, config: TextureConfig) -> None:
        super().__init__()
        widths = list(config.disc_widths)
        cin = config.image_channels + config.landmark_channels
        layers: list[nn.Module] = []
        prev = cin
        for i, w in enumerate(widths):
            stride = 2 if i < len(widths) - 1 else 1
            layers.append(nn.Conv2d(prev, w, 4, stride, 1, bias=i == 0))
            if i > 0:
                layers.append(instance_norm(w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = w
        layers.append(nn.Conv2d(prev, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, frame: torch.Tensor, landmark_image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([frame, landmark_image], dim=1))


# losses ------------------------------------------------------------------------------------------


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Mao et al. 2017 with a=0 (fake), b=1 (real): 0.5 * (E[(D(x)-1)^2] + E[D(G(z))^2])."""
    return 0.5 * ((real_scores.float() - 1.0).pow(2).mean() + fake_scores.float().pow(2).mean())


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator pushes fake scores to the real target c=1: E[(D(G(z))-1)^2]."""
    return (fake_scores.float() - 1.0).pow(2).mean()


def attention_total_variation(attention: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertical and horizontal neighbours of A."""
    a = attention.float()
    dy = (a[:, :, 1:, :] - a[:, :, :-1, :]).pow(2).mean()
    dx = (a[:, :, :, 1:] - a[:, :, :, :-1]).pow(2).mean()
    return dx + dy


MOUTH_POINTS = indices(MOUTH)
EYE_POINTS = (indices(RIGHT_EYE), indices(LEFT_EYE))  # iBUG order


def region_boxes(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """(3, 4) float32 boxes ``x0, y0, x1, y1`` (pixels, inclusive-exclusive) of the mouth, the right eye
    and the left eye of one (68, 2) landmark set in crop pixels, each widened by ``margin`` x its width
    and height on every side (at least 2 px) and clipped to the image. NaN points give an empty box."""
    out = np.zeros((3, 4), np.float32)
    for k, idx in enumerate((MOUTH_POINTS, *EYE_POINTS)):
        pts = np.asarray(landmarks, np.float64)[list(idx)]
        if not np.isfinite(pts).all():
            continue
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        mx, my = max(2.0, margin * (x1 - x0)), max(2.0, margin * (y1 - y0))
        out[k] = np.clip([np.floor(x0 - mx), np.floor(y0 - my), np.ceil(x1 + mx) + 1, np.ceil(y1 + my) + 1],
                         0, size)
    return out


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, K, 4) boxes -> (N, K, H, W) float masks, 1 inside ``x0 <= x < x1, y0 <= y < y1``."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, 1, 1, width)
    b = boxes[..., None, None]
    return ((xs >= b[:, :, 0]) & (xs < b[:, :, 2]) & (ys >= b[:, :, 1]) & (ys < b[:, :, 3])).float()


def region_l1(frame: torch.Tensor, real: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels (and channels) inside ``masks`` (N, H, W), pooled over the
    batch; 0 when every mask is empty."""
    diff = (frame.float() - real.float()).abs().mean(dim=1)  # (N, H, W)
    return (diff * masks).sum() / masks.sum().clamp_min(1.0)


def generator_losses(
    out: TextureOutput, real: torch.Tensor, fake_scores: torch.Tensor, config: TextureConfig,
    boxes: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All generator terms, weighted as in ``config``; ``total`` is what is minimised.

    ``boxes``: (N, 3, 4) mouth, right-eye and left-eye boxes of the targets (:func:`region_boxes`); the
    region L1 terms are left out without them.
    """
    l1 = F.l1_loss(out.frame.float(), real.float())
    adv = lsgan_generator_loss(fake_scores)
    att_mean = out.attention.float().mean()
    att_tv = attention_total_variation(out.attention)
    total = (
        config.l1_weight * l1
        + config.adv_weight * adv
        + config.attention_mean_weight * att_mean
        + config.attention_tv_weight * att_tv
    )
    losses = {"l1": l1, "adv": adv, "att_mean": att_mean, "att_tv": att_tv}
    if boxes is not None and (config.mouth_l1_weight or config.eye_l1_weight):
        masks = box_masks(boxes.float(), real.shape[-2], real.shape[-1])
        losses["l1_mouth"] = region_l1(out.frame, real, masks[:, 0])
        losses["l1_eyes"] = region_l1(out.frame, real, masks[:, 1:].amax(dim=1))
        total = total + config.mouth_l1_weight * losses["l1_mouth"] + config.eye_l1_weight * losses["l1_eyes"]
    return {"total": total, **losses}


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * model`` for every parameter; buffers are copied."""
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p.detach().to(pe.dtype), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)


def ema_decay_at(step: int, decay: float) -> float:
    """The decay used after optimiser step ``step`` (1-based): ``min(decay, (1 + step) / (10 + step))``."""
    return min(decay, (1.0 + step) / (10.0 + step))


def build_texture_models(config: TextureConfig) -> tuple[TextureGenerator, PatchDiscriminator]:
    return TextureGenerator(config), PatchDiscriminator(config)


EMA = "generator_ema"  # the checkpoint's name of the generator's weight average
SSIM_VARIANT = "skimage structural_similarity, 7x7 uniform window, colour (channel mean), data_range 1, [0,1]"


# -------------------------------------------------------------------------------------------------
# loading for generation


def texture_generator_from_state(
    state: dict[str, Any], device: str | torch.device = "cpu", weights: str = "auto"
) -> tuple[TextureGenerator, TextureConfig, dict[str, Any]]:
    """The generator (eval mode) of a loaded texture state, its config and the checkpoint's header.

    ``weights``: ``"auto"`` loads the EMA of the generator's weights (``models.generator_ema``) when the
    checkpoint holds one, else the raw generator (``models.generator``; every checkpoint written before
    the EMA existed); ``"generator"`` or ``"generator_ema"`` force one. The header's ``weights`` names
    what was loaded.
    """
    config = TextureConfig.from_dict(state["config"])
    models = state["models"]
    key = (EMA if EMA in models else "generator") if weights == "auto" else weights
    if key not in models:
        raise KeyError(f"the texture checkpoint holds no {key!r} weights (it holds: {', '.join(models)})")
    gen = TextureGenerator(config)
    gen.load_state_dict(models[key])
    gen.to(device).eval()
    header = {k: state.get(k) for k in ("step", "seed", "talkface_version", "dataset")}
    header["weights"] = key
    return gen, config, header


def load_texture_stage(source: str | os.PathLike, device: str | torch.device = "cpu"
                       ) -> tuple[TextureGenerator, TextureConfig, dict[str, Any]]:
    """:func:`texture_generator_from_state` of a ``.pt`` file or of the texture run in a folder."""
    return texture_generator_from_state(checkpoints.load_stage(source, "texture").state, device)
