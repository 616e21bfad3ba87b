"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018).

Written in plain torch because torchvision cannot be installed next to the CPU torch (DESIGN.md), so the
``lpips`` package is out. The network is LPIPS v0.1: inputs in [-1, 1], the fixed per-channel
shift/scale layer, an AlexNet or VGG16 feature stack tapped after each block's last ReLU, channels
unit-normalised, squared difference, a non-negative 1x1 linear head per tap, spatial mean, sum over taps.

Weights come from two files the user gives (never downloaded):

* the backbone, a torchvision-format state_dict (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``,
  keys ``features.N.weight`` / ``features.N.bias``; ``classifier.*`` is ignored);
* the linear heads of the ``lpips`` package (``lpips/weights/v0.1/alex.pth`` / ``vgg.pth``, keys
  ``lin0.model.1.weight`` ... ``lin4.model.1.weight``, shape (1, C, 1, 1)).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talkface.evaluate.metrics.base import (
    ClipSample,
    Metric,
    MetricResult,
    MetricUnavailable,
    register_metric,
)
from talkface.utils.provenance import sha256_file

# torchvision's feature stacks, as (in, out, kernel, stride, padding) convs and "M" max-pools.
_ALEX = [(3, 64, 11, 4, 2), "M", (64, 192, 5, 1, 2), "M", (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
         (256, 256, 3, 1, 1), "M"]
_VGG16 = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256), "M",
          (256, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512), (512, 512), "M"]

#: Per net: feature-stack builder args, indices (in torchvision's ``features``) of the tapped ReLUs,
#: channels at each tap, the file names users know.
NETS: dict[str, dict[str, Any]] = {
    "alex": {"taps": (1, 4, 7, 9, 11), "channels": (64, 192, 384, 256, 256),
             "backbone_file": "alexnet-owt-7be5be79.pth (torchvision AlexNet_Weights.IMAGENET1K_V1)",
             "heads_file": "lpips/weights/v0.1/alex.pth"},
    "vgg": {"taps": (3, 8, 15, 22, 29), "channels": (64, 128, 256, 512, 512),
            "backbone_file": "vgg16-397923af.pth (torchvision VGG16_Weights.IMAGENET1K_V1)",
            "heads_file": "lpips/weights/v0.1/vgg.pth"},
}

#: LPIPS v0.1 ScalingLayer: (x - shift) / scale, x in [-1, 1]: ImageNet statistics mapped to [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

WEIGHTS_HELP = (
    "LPIPS needs two files (talkface never downloads them): the torchvision ImageNet backbone "
    "state_dict ({backbone}) given as lpips_backbone / --lpips-backbone, and the LPIPS v0.1 linear heads "
    "({heads}, 6 KB, BSD-2, from https://github.com/richzhang/PerceptualSimilarity) given as "
    "lpips_weights / --lpips-weights."
)


def _features(net: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    if net == "alex":
        for spec in _ALEX:
            if spec == "M":
                layers.append(nn.MaxPool2d(3, 2))
            else:
                cin, cout, k, s, p = spec
                layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]
    else:
        for spec in _VGG16:
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(spec[0], spec[1], 3, 1, 1), nn.ReLU()]
    return nn.Sequential(*layers)


class LPIPSNet(nn.Module):
    """The LPIPS v0.1 network; ``forward(a, b)`` takes (N, 3, H, W) tensors in [-1, 1], returns (N,)."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, not {net!r}")
        self.net = net
        self.features = _features(net)
        self.taps = NETS[net]["taps"]
        self.heads = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, c, 1, 1), requires_grad=False) for c in NETS[net]["channels"]]
        )
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def tapped(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        last = self.taps[-1]
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h)
            if i == last:
                break
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor, per_layer: bool = False):
        fa, fb = self.tapped(a), self.tapped(b)
        layers = []
        for xa, xb, w in zip(fa, fb, self.heads, strict=True):
            na = xa / (xa.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            nb = xb / (xb.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            layers.append(F.conv2d((na - nb) ** 2, w).mean((2, 3)).flatten())
        total = torch.stack(layers).sum(0)
        return (total, layers) if per_layer else total


def _load_state(path: Path, what: str, help_text: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MetricUnavailable(f"LPIPS {what} file not found: {str(path)!r}. {help_text}")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise MetricUnavailable(
            f"cannot read LPIPS {what} {path} as a torch state_dict ({exc}). {help_text}"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MetricUnavailable(f"LPIPS {what} {path} holds a {type(state).__name__}, not a state_dict")
    return state


def _check_assign(target: torch.Tensor, state: dict, key: str, path: Path, help_text: str) -> None:
    if key not in state:
        near = sorted(state)[:6]
        raise MetricUnavailable(f"{path} lacks key {key!r} (first keys: {near}). {help_text}")
    value = state[key]
    if tuple(value.shape) != tuple(target.shape):
        raise MetricUnavailable(
            f"{path}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(target.shape)} "
            f"(wrong network for this variant?). {help_text}"
        )
    target.copy_(value.to(target.dtype))


def load_lpips(net: str, backbone: str | Path | None, heads: str | Path | None) -> LPIPSNet:
    """Build the LPIPS net and fill it from the two weight files, with errors that name key and shape."""
    model = LPIPSNet(net)
    help_text = WEIGHTS_HELP.format(backbone=NETS[net]["backbone_file"], heads=NETS[net]["heads_file"])
    if backbone is None or heads is None:
        raise MetricUnavailable(f"LPIPS weights not given. {help_text}")
    bpath, hpath = Path(backbone), Path(heads)
    bstate = _load_state(bpath, "backbone", help_text)
    if not any(k.startswith("features.") for k in bstate):
        bstate = {f"features.{k}": v for k, v in bstate.items()}  # a bare `features` state_dict
    with torch.no_grad():
        for name, param in model.features.named_parameters():
            _check_assign(param, bstate, f"features.{name}", bpath, help_text)
        hstate = _load_state(hpath, "linear heads", help_text)
        for k, head in enumerate(model.heads):
            # lpips saves the head as Sequential(Dropout, Conv2d) -> model.1; without dropout -> model.0
            candidates = (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight")
            key = next((c for c in candidates if c in hstate), candidates[0])
            _check_assign(head, hstate, key, hpath, help_text)
            if (head < 0).any():
                raise MetricUnavailable(
                    f"{hpath}: {key} has negative weights; LPIPS heads are non-negative (clamped in training)"
                )
    model.backbone_sha256 = sha256_file(bpath)
    model.heads_sha256 = sha256_file(hpath)
    return model


@functools.lru_cache(maxsize=4)
def _cached_model(net: str, backbone: str, heads: str, stamp: tuple) -> LPIPSNet:
    return load_lpips(net, backbone, heads)


def _stamp(*paths: str) -> tuple:
    return tuple(Path(p).stat().st_mtime_ns if Path(p).exists() else None for p in paths)


def to_lpips_input(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB -> (N, 3, H, W) float32 in [-1, 1] (LPIPS's input range)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB images, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images on the 0-255 scale, got {arr.dtype}")
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def lpips(
    a: np.ndarray,
    b: np.ndarray,
    *,
    net: str = "alex",
    backbone_weights: str | Path,
    lpips_weights: str | Path,
    batch_size: int = 16,
) -> np.ndarray:
    """LPIPS distance per image pair of two uint8 RGB stacks (N, H, W, 3); lower means more similar."""
    stamp = _stamp(backbone_weights, lpips_weights)
    model = _cached_model(net, str(backbone_weights), str(lpips_weights), stamp)
    ta, tb = to_lpips_input(a), to_lpips_input(b)
    if ta.shape != tb.shape:
        raise ValueError(f"image stacks differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    out = []
    with torch.inference_mode():
        for i in range(0, len(ta), batch_size):
            out.append(model(ta[i : i + batch_size], tb[i : i + batch_size]))
    return torch.cat(out).double().numpy()


@register_metric
class LPIPS(Metric):
    """LPIPS v0.1 between each generated frame and the real frame (AlexNet or VGG16 variant)."""

    name: ClassVar[str] = "lpips"
    higher_is_better: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"ref_frames"})
    doc: ClassVar[str] = "learned perceptual distance (LPIPS v0.1) between generated and real frames"
    reference: ClassVar[str] = "Zhang et al., CVPR 2018; richzhang/PerceptualSimilarity v0.1 heads"
    accepted_options: ClassVar[frozenset[str]] = frozenset(
        {"net", "lpips_weights", "lpips_backbone", "frame_step", "batch_size"}
    )
    variants: ClassVar[dict[str, dict[str, Any]]] = {"alex": {"net": "alex"}, "vgg": {"net": "vgg"}}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.net = self.variant_option("net")
        self.frame_step = int(options.get("frame_step", 1))
        self.batch_size = int(options.get("batch_size", 16))
        self.model = load_lpips(self.net, options.get("lpips_backbone"), options.get("lpips_weights"))

    @property
    def variant(self) -> str:
        """The variant as typed (``alex``/``vgg``); a non-default ``frame_step`` (Python option) is
        appended as ``-every<N>`` so numbers from different frame samplings never share a label."""
        return self.net if self.frame_step == 1 else f"{self.net}-every{self.frame_step}"

    @property
    def weights_sha256(self) -> str | None:
        return f"backbone:{self.model.backbone_sha256},heads:{self.model.heads_sha256}"

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        d.update(
            backbone=self.net,
            lpips_version="v0.1 linear heads (lin0..lin4), spatial average, sum over 5 taps",
            frame_step=self.frame_step,
            backbone_sha256=self.model.backbone_sha256,
            heads_sha256=self.model.heads_sha256,
            input_scaling="uint8 -> [-1,1], then (x - shift) / scale with LPIPS v0.1 constants",
            face_alignment="none: frames compared pixel-aligned as given",
        )
        return d

    def score(self, sample: ClipSample) -> MetricResult:
        gen, ref = sample.frames, sample.ref_frames
        n = min(len(gen), len(ref))
        idx = np.arange(0, n, self.frame_step)
        ta, tb = to_lpips_input(gen[idx]), to_lpips_input(ref[idx])
        if ta.shape != tb.shape:
            return MetricResult.failed(f"frame sizes differ: {gen.shape[1:]} vs {ref.shape[1:]}")
        vals = []
        with torch.inference_mode():
            for i in range(0, len(ta), self.batch_size):
                vals.append(self.model(ta[i : i + self.batch_size], tb[i : i + self.batch_size]))
        per = np.full(n, np.nan)
        per[idx] = torch.cat(vals).double().numpy()
        details = {"frame_step": self.frame_step}
        return MetricResult(value=float(np.nanmean(per)), per_frame=per, details=details)
