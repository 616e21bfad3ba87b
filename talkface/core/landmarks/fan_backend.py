"""FAN landmarks: face-alignment's 2D-FAN regresses the 68 points inside dlib's face boxes.

Bulat and Tzimiropoulos, "How far are we from solving the 2D & 3D face alignment problem?" (ICCV
2017): a stack of hourglass networks maps a 256x256 RGB face crop to 68 heatmaps of 64x64; each
point is its heatmap's maximum. talkface runs the network itself, from the model file the user
passes (``model_path``, ``talkface prepare --landmarks fan --fan-model FILE``); it never downloads
anything and does not need the ``face-alignment`` package (which pulls ``opencv-python``, a second
cv2 that breaks our ``opencv-python-headless``). Two file formats, told apart by loading:

- the TorchScript archive face-alignment 1.3-1.4 downloads (``2DFAN4-cd938726ad.zip``, or the
  ``2DFAN4_1.5-*.zip`` / ``2DFAN4_1.6-*.zip`` builds for older torch), run with ``torch.jit.load``;
- the state dict of face-alignment 1.5 and before 1.3 (``2DFAN4-11f355bf06.pth.tar``), read with
  ``torch.load(weights_only=True)`` into :class:`FAN`, the network written here from the paper
  (its parameter names are those of the released file, so the file loads as it is).

The input convention is face-alignment's (the one the released weights were trained with): from a
face box ``(left, top, right, bottom)``, the centre is the box's centre moved up by 0.12 of the box
height (toward the forehead: a detector box starts at the brows, the crop should hold the whole
head), the crop side is ``200 * (width + height) / 195`` pixels (``REFERENCE_SCALE`` 195 relates a
box to FAN's 200-pixel reference face), resized to 256x256, RGB scaled to [0, 1], NCHW. A point is
the heatmap's arg-max moved a quarter pixel toward its larger neighbour on each axis, mapped back
through the inverse crop. Our coordinates are continuous, in the pixel-centre convention of the
other backends; face-alignment's own arithmetic truncates its results to whole pixels (and starts its
crop 1/256 of the crop side off the box), so its points differ from ours by less than one image pixel.

Boxes come from the dlib detectors of the ``dlib`` backend (``detector``: ``hog``, ``cnn``, or the
chain ``hog,cnn``; ``select``; ``upsample``; the upside-down check), run on the whole of **every
frame**, as face-alignment does. Unlike the dlib backend, FAN does not track between detections: a box
derived from the previous frame's points would make every frame wait for the previous frame's network
output, while per-frame boxes let the network run on batches of ``batch_size`` frames (on the GPU when
there is one). Nor does it search a region around the last face first, as the dlib backend's
re-detection does: HOG's box in a region cut from the frame lands on another grid than in the whole
frame (on GRID s1 ``bbaf2n`` it moved 14 px, 11% of the box, between neighbouring frames, where the
whole-frame box stayed put), and the dlib predictor re-boxes itself but FAN's crop is the box. The
cost is one HOG run per frame (about 10 ms on a 360x288 frame). CNN (MMOD) boxes are first mapped to
HOG's box convention (``dlib_backend.CNN_TO_HOG_BOX``), so a ``hog,cnn`` chain gives FAN one box
convention.

Licence of the weights: face-alignment is BSD-3-Clause and its README names no other licence for the
models it downloads; the 2D-FAN was trained on 300W-LP, made from 300-W, whose images' licence
excludes commercial use (see docs/landmarks.md).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from talkface.core.landmarks.base import LandmarkBackend, LandmarkTrack, register_landmark_backend
from talkface.core.landmarks.dlib_backend import CNN_TO_HOG_BOX, DlibBackend, _Box, _Detection
from talkface.utils.provenance import sha256_file

#: What changes when this module's arithmetic changes (recorded as the backend's version).
FAN_VERSION = "talkface-fan-1"
CROP_SIZE = 256  # the network's input side
HEATMAP_SIZE = 64  # its output side
REFERENCE_SCALE = 195.0  # box (width + height) / REFERENCE_SCALE = face scale ...
SCALE_PIXELS = 200.0  # ... and the crop side is SCALE_PIXELS * scale image pixels
CENTER_Y_OFFSET = 0.12  # the crop centre sits this share of the box height above the box centre
N_POINTS = 68
#: In a faceless stretch the costly upsampled full-frame retry runs only every this many frames.
RETRY_INTERVAL = 25
RELEASES = "https://www.adrianbulat.com/downloads/python-fan/"
_WHAT = (f"the 2D-FAN model file released with face-alignment (2DFAN4-cd938726ad.zip or "
         f"2DFAN4-11f355bf06.pth.tar from {RELEASES}, or the copy face-alignment left in "
         "~/.cache/torch/hub/checkpoints/)")


class FanModelError(ValueError):
    """A FAN model file that is missing or cannot be loaded (one sentence saying what is needed)."""


# ---------------------------------------------------------------------------------------------
# The network, for the state-dict release. Written from the papers: Bulat and Tzimiropoulos (ICCV
# 2017) stack four hourglasses (Newell et al. 2016) built from their hierarchical, parallel and
# multi-scale residual block ("Binarized convolutional landmark localizers", ICCV 2017). Module names
# follow the released file's parameter names so that it loads unchanged.


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)


class _MultiScaleBlock(nn.Module):
    """Three chained 3x3 convolutions (out/2, out/4, out/4 channels), each after BN + ReLU, whose
    outputs are concatenated (receptive fields 3, 5, 7) and added to the (projected) input."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3(cin, half)
        self.bn2, self.conv2 = nn.BatchNorm2d(half), _conv3(half, quarter)
        self.bn3, self.conv3 = nn.BatchNorm2d(quarter), _conv3(quarter, quarter)
        self.downsample = (None if cin == cout else nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.cat((a, b, c), 1) + skip


class _Hourglass(nn.Module):
    """At each level: a full-resolution branch (``b1_<level>``) plus a half-resolution branch
    (average pool, ``b2_<level>``, the next level or ``b2_plus_1`` at the bottom, ``b3_<level>``,
    nearest-neighbour upsampling)."""

    def __init__(self, depth: int, features: int) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            for part in ("b1", "b2", "b3"):
                self.add_module(f"{part}_{level}", _MultiScaleBlock(features, features))
        self.add_module("b2_plus_1", _MultiScaleBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        blocks = self._modules
        low = blocks[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else blocks["b2_plus_1"](low)
        low = blocks[f"b3_{level}"](low)
        return blocks[f"b1_{level}"](x) + F.interpolate(low, scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """The 2D-FAN: a stem to 256 channels at 64x64, then ``stacks`` hourglasses, each predicting
    ``points`` heatmaps that the next one also sees (intermediate supervision); returns the last."""

    def __init__(self, stacks: int = 4, points: int = N_POINTS) -> None:
        super().__init__()
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = _MultiScaleBlock(64, 128)
        self.conv3 = _MultiScaleBlock(128, 128)
        self.conv4 = _MultiScaleBlock(128, 256)
        for i in range(stacks):
            self.add_module(f"m{i}", _Hourglass(4, 256))
            self.add_module(f"top_m_{i}", _MultiScaleBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, points, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(points, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self._modules
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        heatmaps = x
        for i in range(self.stacks):
            features = F.relu(m[f"bn_end{i}"](m[f"conv_last{i}"](m[f"top_m_{i}"](m[f"m{i}"](x)))))
            heatmaps = m[f"l{i}"](features)
            if i < self.stacks - 1:
                x = x + m[f"bl{i}"](features) + m[f"al{i}"](heatmaps)
        return heatmaps


def _fan_from_state_dict(state: Any) -> FAN:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "l0.weight" not in state:
        raise ValueError("no 2D-FAN heatmap layer (l0.weight) in it")
    stacks = 0
    while f"l{stacks}.weight" in state:
        stacks += 1
    net = FAN(stacks, int(state["l0.weight"].shape[0]))
    net.load_state_dict(state)  # strict: a missing or extra key is a different network
    return net


def load_fan(path: str | Path | None, device: str | torch.device = "cpu") -> tuple[nn.Module, str]:
    """The network in ``path`` (TorchScript archive or state dict) in eval mode on ``device``, and
    the format's name; a :class:`FanModelError` (one sentence) when the file is missing or no FAN."""
    if path is None or str(path) == "":
        raise FanModelError(f"The fan landmark backend needs {_WHAT}, given as --fan-model PATH.")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FanModelError(f"FAN model file {p} does not exist; give --fan-model {_WHAT}.")
    errors = []
    net: nn.Module | None = None
    fmt = ""
    if zipfile.is_zipfile(p):  # torch.save and torch.jit.save both write zip archives
        try:
            net, fmt = torch.jit.load(str(p), map_location=device), "torchscript"
        except Exception as exc:  # noqa: BLE001 - not TorchScript: try the state dict below
            errors.append(type(exc).__name__)
    if net is None:
        try:
            net = _fan_from_state_dict(torch.load(str(p), map_location=device, weights_only=True))
            fmt = "state_dict"
        except Exception as exc:  # noqa: BLE001 - any failure means: not a FAN file
            why = str(exc).splitlines()[0][:80] if isinstance(exc, ValueError) else type(exc).__name__
            errors.append(why)
    if net is not None:
        net = net.to(device).eval()
        try:
            with torch.inference_mode():
                out = _heatmaps(net(torch.zeros(1, 3, CROP_SIZE, CROP_SIZE, device=device)))
            if tuple(out.shape[1:]) != (N_POINTS, HEATMAP_SIZE, HEATMAP_SIZE):
                errors.append(f"it outputs {tuple(out.shape[1:])}, not 68 heatmaps of 64x64")
                net = None
        except Exception as exc:  # noqa: BLE001
            errors.append(f"it does not run on a 256x256 RGB crop ({type(exc).__name__})")
            net = None
    if net is None:
        why = "; ".join(e for e in errors if e) or "unreadable"
        raise FanModelError(f"FAN model file {p} could not be loaded ({why}); give --fan-model {_WHAT}.")
    return net, fmt


def _heatmaps(out: Any) -> torch.Tensor:
    """The last stack's heatmaps: released files return a tensor, or a list with one per stack."""
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out


# ---------------------------------------------------------------------------------------------
# Geometry: box -> crop, heatmaps -> points, points -> image.


def crop_frame(box: Sequence[float]) -> tuple[float, float, float]:
    """``(cx, cy, side)``: the crop square of a ``(left, top, right, bottom)`` box, in image pixels."""
    left, top, right, bottom = (float(v) for v in box)
    w, h = right - left, bottom - top
    side = SCALE_PIXELS * (w + h) / REFERENCE_SCALE
    return (left + right) / 2, (top + bottom) / 2 - CENTER_Y_OFFSET * h, side


def crop_matrix(cx: float, cy: float, side: float, size: int = CROP_SIZE) -> np.ndarray:
    """(2, 3) affine from image pixels to crop pixels (pixel-centre convention, as cv2.warpAffine):
    the square of ``side`` centred on (cx, cy) onto ``size`` x ``size``."""
    s = size / side
    return np.array([[s, 0.0, s * (side / 2 - cx) - 0.5], [0.0, s, s * (side / 2 - cy) - 0.5]])


def crop_face(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The network's 256x256 RGB uint8 crop for a box (outside the image: black)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return cv2.warpAffine(image, crop_matrix(*crop_frame(box)), (CROP_SIZE, CROP_SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def decode_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) heatmaps -> (B, N, 2) positions in heatmap pixels, pixel-edge convention (a peak
    on pixel j gives j + 0.5): the arg-max plus a quarter pixel toward the larger neighbour, on each
    axis where both neighbours exist."""
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, n, h * w)
    idx = flat.argmax(-1)
    x, y = idx % w, idx // w
    xl, xr = (x - 1).clamp(0, w - 1), (x + 1).clamp(0, w - 1)
    yu, yd = (y - 1).clamp(0, h - 1), (y + 1).clamp(0, h - 1)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return flat.gather(-1, (yy * w + xx).unsqueeze(-1)).squeeze(-1)

    dx = torch.sign(at(y, xr) - at(y, xl)) * ((x > 0) & (x < w - 1))
    dy = torch.sign(at(yd, x) - at(yu, x)) * ((y > 0) & (y < h - 1))
    return torch.stack((x + 0.5 + 0.25 * dx, y + 0.5 + 0.25 * dy), dim=-1).float()


def heatmap_to_image(points: np.ndarray, box: Sequence[float],
                     heatmap_size: int = HEATMAP_SIZE) -> np.ndarray:
    """Heatmap positions (pixel-edge convention) -> image pixels (pixel-centre convention)."""
    cx, cy, side = crop_frame(box)
    scale = side / heatmap_size
    out = np.asarray(points, dtype=np.float64) * scale
    out[..., 0] += cx - side / 2
    out[..., 1] += cy - side / 2
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class FanBackend(LandmarkBackend):
    """dlib face boxes on every frame, 2D-FAN points in them, batched on the GPU when there is one.

    ``model_path``: the 2D-FAN file (see the module docstring). ``detector``, ``upsample``,
    ``select``, ``check_orientation``, ``cnn_path``: as in the dlib backend. ``batch_size``: crops per
    network call. ``device``: ``cuda`` when available, else ``cpu`` (not in the settings: it changes
    the numbers only by float rounding).
    """

    name = "fan"

    def __init__(
        self,
        model_path: str | Path | None = None,
        detector: str = "hog",
        upsample: int = 0,
        select: str = "score",
        check_orientation: bool = True,
        cnn_path: str | None = None,
        batch_size: int = 16,
        device: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = torch.device(device or _default_device())
        self.net, self.model_format = load_fan(model_path, self.device)
        self.model_path = str(Path(str(model_path)).expanduser())
        self.batch_size = int(batch_size)
        # The dlib backend's detectors, ROI search, face choice and upside-down check (its 68-point
        # predictor is loaded with it but not used).
        self.boxes = DlibBackend(detector=detector, upsample=upsample, select=select,
                                 check_orientation=check_orientation, cnn_path=cnn_path)
        self.detectors = self.boxes.detectors

    def settings(self) -> dict[str, Any]:
        boxes = self.boxes.settings()
        out: dict[str, Any] = {
            "backend": self.name,
            "fan_version": FAN_VERSION,
            "fan_model": Path(self.model_path).name,
            "fan_format": self.model_format,
            "fan_sha256": sha256_file(self.model_path),
            "crop": {"size": CROP_SIZE, "reference_scale": REFERENCE_SCALE, "scale_pixels": SCALE_PIXELS,
                     "center_y_offset": CENTER_Y_OFFSET},
            "detector": boxes["detector"],
            "upsample": boxes["upsample"],
            "check_orientation": boxes["check_orientation"],
            "torch_version": torch.__version__,
            "dlib_version": boxes["dlib_version"],
        }
        for key in ("select", "largest_min_score", "cnn_box_to_hog", "cnn_model", "cnn_sha256"):
            if key in boxes:  # only when used, as in the dlib backend
                out[key] = boxes[key]
        return out

    # -- the network ------------------------------------------------------------------------
    def landmarks_in_boxes(self, images: Sequence[np.ndarray],
                           boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """(N, 68, 2) float32 image-pixel points of one face box ``(left, top, right, bottom)`` per image."""
        crops = [crop_face(np.ascontiguousarray(im), box) for im, box in zip(images, boxes, strict=True)]
        if not crops:
            return np.zeros((0, N_POINTS, 2), np.float32)
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(np.stack(crops[start:start + self.batch_size])).to(self.device)
            batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
            with torch.inference_mode():
                hm = _heatmaps(self.net(batch)).float()
            out.append(decode_heatmaps(hm).cpu().numpy())
        grid = np.concatenate(out)
        return np.stack([heatmap_to_image(g, box, HEATMAP_SIZE) for g, box in zip(grid, boxes, strict=True)])

    # -- boxes --------------------------------------------------------------------------------
    @staticmethod
    def _box(det: _Detection) -> tuple[float, float, float, float]:
        """The detection's box as (left, top, right, bottom) in HOG's convention."""
        r = det.rect
        if det.detector != "cnn":
            return float(r.left()), float(r.top()), float(r.right()), float(r.bottom())
        b = _Box.from_rect(r)
        dx, dy, k = CNN_TO_HOG_BOX
        cx, cy, half = b.cx + dx * b.size, b.cy + dy * b.size, k * b.size / 2
        return cx - half, cy - half, cx + half, cy + half

    def face_box(self, image: np.ndarray) -> tuple[float, float, float, float] | None:
        """The box FAN is given for the image's chosen face (None: no face, or upside down)."""
        image = np.ascontiguousarray(image)
        det = self.boxes._detect_full(image)
        if det is None or (self.boxes.check_orientation and self.boxes._upside_down(image, det)):
            return None
        return self._box(det)

    # -- public API ---------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> np.ndarray | None:
        box = self.face_box(image)
        return None if box is None else self.landmarks_in_boxes([image], [box])[0]

    def track(self, frames: Iterable[np.ndarray]) -> LandmarkTrack:
        """A box on every frame (whole-frame detection), the network on batches of crops."""
        points: list[np.ndarray] = []
        found: list[bool] = []
        pending_images: list[np.ndarray] = []
        pending: list[tuple[int, tuple[float, float, float, float]]] = []
        nan = np.full((N_POINTS, 2), np.nan, np.float32)
        misses = 0
        rejected: dict[str, int] = {}
        info: dict[str, int] = {}

        def flush() -> None:
            pts = self.landmarks_in_boxes(pending_images, [box for _, box in pending])
            for (i, _), p in zip(pending, pts, strict=True):
                points[i] = p
            pending_images.clear()
            pending.clear()

        for frame in frames:
            image = np.ascontiguousarray(frame)
            det = self.boxes._detect_full(image, retry_upsample=misses % RETRY_INTERVAL == 0)
            if det is not None and self.boxes.check_orientation and self.boxes._upside_down(image, det):
                rejected["upside_down"] = rejected.get("upside_down", 0) + 1
                det = None
            points.append(nan)
            found.append(det is not None)
            if det is None:
                misses += 1
                continue
            misses = 0
            if det.n_faces > 1:
                info["multiple_faces"] = info.get("multiple_faces", 0) + 1
            if len(self.detectors) > 1:
                key = f"detected_by_{det.detector}"
                info[key] = info.get(key, 0) + 1
            pending_images.append(image)
            pending.append((len(points) - 1, self._box(det)))
            if len(pending) >= self.batch_size:
                flush()
        if pending:
            flush()
        n = len(points)
        return LandmarkTrack(
            points=np.stack(points) if n else np.zeros((0, N_POINTS, 2), np.float32),
            face_found=np.array(found, bool), detected=np.ones(n, bool), rejected=rejected, info=info,
        )


@register_landmark_backend("fan")
def _make_fan(**options: Any) -> FanBackend:
    return FanBackend(**options)
