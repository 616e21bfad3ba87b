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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from talkface.models.render import RenderSettings


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
    # losses
    l1_weight: float = 10.0  # L1 between generated and real frame
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
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("gen_widths", "disc_widths", "betas"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance norm with a per-channel affine, as GroupNorm with one group per channel.

    The same normalisation as ``nn.InstanceNorm2d(affine=True)`` (statistics per sample and channel
    over H, W), but PyTorch's GroupNorm kernel is 2-3x faster on CPU and keeps channels_last.
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
    """U-Net on concat(identity, landmark image) with an attention head and a colour head."""

    def __init__(self, config: TextureConfig) -> None:
        super().__init__()
        self.config = config
        widths = list(config.gen_widths)
        cin = config.image_channels + config.landmark_channels
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

    def forward(self, identity: torch.Tensor, landmark_image: torch.Tensor) -> TextureOutput:
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
        attention = torch.sigmoid(self.attention_head(h))
        frame = composite(attention, colour, identity)
        return TextureOutput(frame=frame, attention=attention, colour=colour)


def composite(attention: torch.Tensor, colour: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """``A * C + (1 - A) * identity``: attention picks generated colour, else keeps the identity pixel."""
    return attention * colour + (1.0 - attention) * identity


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


def generator_losses(
    out: TextureOutput, real: torch.Tensor, fake_scores: torch.Tensor, config: TextureConfig
) -> dict[str, torch.Tensor]:
    """All generator terms, weighted as in ``config``; ``total`` is what is minimised."""
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
    return {"total": total, "l1": l1, "adv": adv, "att_mean": att_mean, "att_tv": att_tv}


def build_texture_models(config: TextureConfig) -> tuple[TextureGenerator, PatchDiscriminator]:
    return TextureGenerator(config), PatchDiscriminator(config)
