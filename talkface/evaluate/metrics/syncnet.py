"""Lip sync: SyncNet LSE-D and LSE-C (Chung & Zisserman, "Out of time: automated lip sync in the wild",
ACCV workshops 2016; the LSE-C/LSE-D protocol of Prajwal et al., "A Lip Sync Expert Is All You Need",
ACM MM 2020, which scores videos with the public ``syncnet_v2.model``).

The network is the public SyncNet v2 layer list (audio: 13x20 MFCC windows of 0.2 s; video: 5 stacked
224x224 colour face crops, channels in BGR order on the raw 0-255 scale, as ``syncnet_python`` feeds
``cv2.imread`` frames). For each video window v (frames v..v+4) and MFCC window 4v..4v+19 both streams
give a 1024-d embedding; the audio embeddings are shifted by -15..+15 frames (zero vectors past the
ends, as the reference does), and per offset the Euclidean distance is averaged over the windows:

* LSE-D = min over offsets of the mean distance (lower is better);
* LSE-C = median over offsets minus that minimum (higher is better); the best offset goes in details.

Unlike ``syncnet_python``'s pipeline (which drops face tracks under 100 frames), any clip of at least
6 frames is scored, so 75-frame GRID clips work. Face crops: the ``run_pipeline.py`` crop rule
(box half-size s, centre (x, y), median-filtered over 13 frames; rows y-s .. y+1.8s, columns
x-1.4s .. x+1.4s, padded with grey 110, resized to 224) applied to the box of the 68 landmarks
instead of the S3FD detector's box; without landmarks the whole frame is the face crop (for videos that
are already face crops, such as talkface's aligned crops).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from scipy.signal import medfilt
from torch import nn

from talkface.evaluate.metrics.base import (
    ClipSample,
    Metric,
    MetricResult,
    MetricUnavailable,
    register_metric,
)
from talkface.utils.provenance import sha256_file

VSHIFT = 15
FPS = 25.0
SAMPLE_RATE = 16000
CROP_SIZE = 224
CROP_SCALE = 0.4  # run_pipeline.py --crop_scale
SMOOTH_KERNEL = 13  # run_pipeline.py median filter of the detection boxes
PAD_VALUE = 110

SYNCNET_HELP = (
    "LSE-C/LSE-D need the public SyncNet weights 'syncnet_v2.model' (from joonson/syncnet_python's "
    "download_model.sh; see its LICENSE for terms), given as syncnet_model / --syncnet-model. "
    "talkface never downloads it."
)


def _conv_bn(conv: nn.Module, bn: nn.Module, relu_inplace: bool = True) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=relu_inplace)]


class SyncNet(nn.Module):
    """SyncNet v2: two streams into a shared 1024-d space. Module indices follow the public layout so
    the released state_dict (``netcnnaud.0.weight`` ...) loads by name."""

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        c2, b2 = nn.Conv2d, nn.BatchNorm2d
        self.netcnnaud = nn.Sequential(
            *_conv_bn(c2(1, 64, 3, 1, 1), b2(64)), nn.MaxPool2d(1, 1),
            *_conv_bn(c2(64, 192, 3, 1, 1), b2(192)), nn.MaxPool2d(3, (1, 2)),
            *_conv_bn(c2(192, 384, 3, 1, 1), b2(384)),
            *_conv_bn(c2(384, 256, 3, 1, 1), b2(256)),
            *_conv_bn(c2(256, 256, 3, 1, 1), b2(256)), nn.MaxPool2d(3, 2),
            *_conv_bn(c2(256, 512, (5, 4), 1, 0), b2(512), relu_inplace=False),
        )  # (N, 1, 13, 20) -> (N, 512, 1, 1)
        self.netfcaud = self._head(embed_dim)
        self.netfclip = self._head(embed_dim)
        c3, b3 = nn.Conv3d, nn.BatchNorm3d
        self.netcnnlip = nn.Sequential(
            *_conv_bn(c3(3, 96, (5, 7, 7), (1, 2, 2), 0), b3(96)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), b3(256)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv_bn(c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), b3(256)),
            *_conv_bn(c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), b3(256)),
            *_conv_bn(c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), b3(256)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(c3(256, 512, (1, 6, 6), 1, 0), b3(512)),
        )  # (N, 3, 5, 224, 224) -> (N, 512, 1, 1, 1)
        self.eval()

    @staticmethod
    def _head(embed_dim: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: str | Path | None) -> SyncNet:
    """Load ``syncnet_v2.model`` (a state_dict; TorchScript archives are read too), mapping key prefixes
    ``__S__.`` / ``module.`` away; any missing key or shape mismatch is an error naming it."""
    p = Path(path) if path else None
    if p is None or not p.is_file():
        what = f"SyncNet weights not found: {path!r}" if path else "no SyncNet weights given"
        raise MetricUnavailable(f"{what}. {SYNCNET_HELP}")
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - maybe a TorchScript archive
        try:
            state = torch.jit.load(str(p), map_location="cpu").state_dict()
        except Exception as exc:  # noqa: BLE001
            raise MetricUnavailable(f"cannot read {p} as SyncNet weights ({exc}). {SYNCNET_HELP}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MetricUnavailable(f"{p} holds a {type(state).__name__}, not a state_dict. {SYNCNET_HELP}")
    clean = {}
    for key, value in state.items():
        for prefix in ("__S__.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        clean[key] = value
    model = SyncNet()
    own = model.state_dict()
    for key, target in own.items():
        if key not in clean:
            if key.endswith("num_batches_tracked"):
                continue  # not stored by older torch; unused in eval mode
            first = sorted(clean)[:5]
            raise MetricUnavailable(f"{p} lacks key {key!r} (first keys: {first}). {SYNCNET_HELP}")
        if tuple(clean[key].shape) != tuple(target.shape):
            raise MetricUnavailable(
                f"{p}: key {key!r} has shape {tuple(clean[key].shape)}, "
                f"SyncNet v2 expects {tuple(target.shape)}"
            )
        own[key] = clean[key].to(target.dtype)
    model.load_state_dict(own)
    model.eval()
    model.sha256 = sha256_file(p)
    model.path = p
    return model


# --------------------------------------------------------------------------- inputs


def mfcc_13(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """(13, N) MFCC at 100 Hz, python_speech_features defaults, on the int16 sample scale that
    ``syncnet_python`` reads from its wav file (the scale shifts the energy coefficient)."""
    import python_speech_features

    if sr != SAMPLE_RATE:
        raise ValueError(f"SyncNet expects {SAMPLE_RATE} Hz audio, got {sr}")
    samples = np.asarray(audio, dtype=np.float64) * 32768.0
    return python_speech_features.mfcc(samples, SAMPLE_RATE).T.astype(np.float32)


def face_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T, 3) smoothed (x centre, y centre, half size), gaps filled from the neighbours."""
    with warnings.catch_warnings():  # frames without a face are all-NaN and are filled below
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(landmarks, axis=1), np.nanmax(landmarks, axis=1)
    boxes = np.stack([(lo[:, 0] + hi[:, 0]) / 2, (lo[:, 1] + hi[:, 1]) / 2, (hi - lo).max(1) / 2], 1)
    ok = np.isfinite(boxes).all(1)
    if not ok.any():
        raise ValueError("no frame has landmarks")
    t = np.arange(len(boxes))
    for c in range(3):
        boxes[:, c] = np.interp(t, t[ok], boxes[ok, c])
    kernel = min(SMOOTH_KERNEL, len(boxes) if len(boxes) % 2 else len(boxes) - 1)
    if kernel >= 3:
        boxes = np.stack([medfilt(boxes[:, c], kernel) for c in range(3)], 1)
    return boxes


def face_crops(frames: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """(T, H, W, 3) RGB uint8 -> (T, 224, 224, 3) BGR uint8 SyncNet face crops (see module doc)."""
    bgr = frames[..., ::-1]
    if landmarks is None:
        return np.stack([cv2.resize(np.ascontiguousarray(f), (CROP_SIZE, CROP_SIZE)) for f in bgr])
    out = []
    for frame, (x, y, s) in zip(bgr, face_boxes(landmarks), strict=True):
        pad = int(s * (1 + 2 * CROP_SCALE))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        my, mx = y + pad, x + pad
        face = padded[int(my - s) : int(my + s * (1 + 2 * CROP_SCALE)),
                      int(mx - s * (1 + CROP_SCALE)) : int(mx + s * (1 + CROP_SCALE))]
        out.append(cv2.resize(np.ascontiguousarray(face), (CROP_SIZE, CROP_SIZE)))
    return np.stack(out)


def resample_to_25fps(frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-frame resampling to SyncNet's 25 fps; returns the frames and the source indices."""
    if abs(fps - FPS) < 1e-3:
        return frames, np.arange(len(frames))
    n = int(np.floor(len(frames) * FPS / fps))
    idx = np.minimum(np.round(np.arange(n) * fps / FPS).astype(int), len(frames) - 1)
    return frames[idx], idx


# --------------------------------------------------------------------------- offsets


def offset_distances(video_emb: torch.Tensor | np.ndarray, audio_emb: torch.Tensor | np.ndarray,
                     vshift: int = VSHIFT) -> np.ndarray:
    """(n, 2*vshift+1) distances: row i, column j compares video window i with audio window
    i + j - vshift (a zero vector past either end), as ``syncnet_python``'s ``calc_pdist``."""
    v = torch.as_tensor(np.asarray(video_emb), dtype=torch.float32)
    a = torch.as_tensor(np.asarray(audio_emb), dtype=torch.float32)
    if v.shape != a.shape:
        raise ValueError(f"video and audio embeddings differ in shape: {tuple(v.shape)} vs {tuple(a.shape)}")
    win = 2 * vshift + 1
    padded = torch.nn.functional.pad(a, (0, 0, vshift, vshift))
    windows = padded.unfold(0, win, 1).permute(0, 2, 1)  # (n, win, d)
    dists = torch.nn.functional.pairwise_distance(v[:, None, :].expand_as(windows), windows)
    return dists.double().numpy()


def lse_from_embeddings(video_emb, audio_emb, vshift: int = VSHIFT) -> dict[str, Any]:
    """LSE-D, LSE-C, the best offset (frames; positive: audio leads) and the per-offset mean distances."""
    dists = offset_distances(video_emb, audio_emb, vshift)
    mean = dists.mean(0)
    best = int(np.argmin(mean))
    return {
        "lse_d": float(mean[best]),
        "lse_c": float(np.median(mean) - mean[best]),
        "offset": vshift - best,
        "mean_distance_per_offset": mean,
        "per_frame_distance": dists[:, best],
    }


class SyncNetScorer:
    """Runs SyncNet on one clip: face crops, MFCC windows, embeddings, offsets."""

    def __init__(self, model_path: str | Path | None, batch_size: int = 16, vshift: int = VSHIFT) -> None:
        self.model = load_syncnet(model_path)
        self.batch_size = batch_size
        self.vshift = vshift

    def embeddings(self, crops_bgr: np.ndarray, audio: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        mfcc = mfcc_13(audio)
        n_frames = min(len(crops_bgr), len(audio) // (SAMPLE_RATE // int(FPS)))
        n_win = min(n_frames - 5, (mfcc.shape[1] - 20) // 4 + 1)  # the reference's lastframe = n - 5
        if n_win < 1:
            raise ValueError(f"clip too short for SyncNet: {len(crops_bgr)} frames, {len(audio)} samples")
        video = torch.from_numpy(np.ascontiguousarray(crops_bgr[: n_win + 4])).float()  # (T, H, W, 3)
        video = video.permute(3, 0, 1, 2)  # (3, T, H, W)
        mf = torch.from_numpy(mfcc)
        v_out, a_out = [], []
        with torch.inference_mode():
            for s in range(0, n_win, self.batch_size):
                idx = range(s, min(n_win, s + self.batch_size))
                v_out.append(self.model.forward_lip(torch.stack([video[:, i : i + 5] for i in idx])))
                mfcc_windows = torch.stack([mf[None, :, 4 * i : 4 * i + 20] for i in idx])
                a_out.append(self.model.forward_aud(mfcc_windows))
        return torch.cat(v_out), torch.cat(a_out)

    def score(self, frames: np.ndarray, audio: np.ndarray, fps: float,
              landmarks: np.ndarray | None = None) -> dict[str, Any]:
        frames25, idx = resample_to_25fps(frames, fps)
        lms = None if landmarks is None else landmarks[idx]
        v, a = self.embeddings(face_crops(frames25, lms), audio)
        out = lse_from_embeddings(v, a, self.vshift)
        out.update(n_windows=len(v), crop="landmarks-box" if lms is not None else "full-frame",
                   resampled_from_fps=None if abs(fps - FPS) < 1e-3 else fps)
        return out


def lse(frames: np.ndarray, audio: np.ndarray, *, syncnet_model: str | Path, fps: float = FPS,
        landmarks: np.ndarray | None = None) -> dict[str, Any]:
    """LSE-D / LSE-C of one clip: (T, H, W, 3) RGB uint8 frames, mono float32 16 kHz audio."""
    return SyncNetScorer(syncnet_model).score(frames, audio, fps, landmarks)


# --------------------------------------------------------------------------- metrics

_SCORERS: dict[tuple, SyncNetScorer] = {}
_RESULTS: OrderedDict[tuple, dict[str, Any]] = OrderedDict()


def _digest(*arrays: np.ndarray | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        if arr is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(arr)
            h.update(str((a.shape, a.dtype)).encode())
            h.update(a.data)
    return h.hexdigest()


class _LSEMetric(Metric):
    needs: ClassVar[frozenset[str]] = frozenset({"audio"})
    accepted_options: ClassVar[frozenset[str]] = frozenset({"syncnet_model", "syncnet_crop", "batch_size"})
    reference: ClassVar[str] = "Chung & Zisserman 2016 (SyncNet); Prajwal et al. 2020 (LSE-C/LSE-D protocol)"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.crop = options.get("syncnet_crop", "landmarks")
        if self.crop not in ("landmarks", "full"):
            raise ValueError("syncnet_crop must be 'landmarks' or 'full'")
        path = options.get("syncnet_model")
        cache_key = (str(path), int(options.get("batch_size", 16)))
        if cache_key not in _SCORERS:  # LSE-C and LSE-D share one network and one pass per clip
            _SCORERS[cache_key] = SyncNetScorer(path, batch_size=cache_key[1])
        self.scorer = _SCORERS[cache_key]

    @property
    def variant(self) -> str:
        return f"syncnet-v2-vshift{VSHIFT}-crop-{self.crop}"

    @property
    def weights_sha256(self) -> str | None:
        return self.scorer.model.sha256

    def definition(self) -> dict[str, Any]:
        d = super().definition()
        d.update(
            model_file=self.scorer.model.path.name,
            input_resolution="224x224 BGR face crops, 5 frames at 25 fps; MFCC 13x20 at 100 Hz",
            face_alignment=("run_pipeline crop rule on the 68-landmark box (crop_scale 0.4, median 13)"
                            if self.crop == "landmarks" else "whole frame resized to 224x224"),
            offsets=f"-{VSHIFT}..+{VSHIFT} frames",
        )
        return d

    def score(self, sample: ClipSample) -> MetricResult:
        lms = sample.landmarks if self.crop == "landmarks" else None
        key = (self.weights_sha256, self.crop, _digest(sample.frames, sample.audio, lms), sample.fps)
        if key not in _RESULTS:
            _RESULTS[key] = self.scorer.score(sample.frames, sample.audio, sample.fps, lms)
            while len(_RESULTS) > 8:
                _RESULTS.popitem(last=False)
        r = _RESULTS[key]
        details = {"offset": r["offset"], "n_windows": r["n_windows"], "crop": r["crop"],
                   "mean_distance_per_offset": r["mean_distance_per_offset"].round(4).tolist()}
        if r["resampled_from_fps"]:
            details["resampled_from_fps"] = r["resampled_from_fps"]
        per_frame = r["per_frame_distance"] if self.name == "lse_d" else None
        return MetricResult(value=r[self.name], per_frame=per_frame, details=details)  # keyed by metric name


@register_metric
class LSED(_LSEMetric):
    """SyncNet distance at the best audio-video offset (lower is better)."""

    name: ClassVar[str] = "lse_d"
    higher_is_better: ClassVar[bool] = False
    doc: ClassVar[str] = "SyncNet LSE-D: mean audio-visual embedding distance at the best offset (+-15 fr)"


@register_metric
class LSEC(_LSEMetric):
    """SyncNet confidence: median minus minimum of the per-offset mean distances (higher is better)."""

    name: ClassVar[str] = "lse_c"
    higher_is_better: ClassVar[bool] = True
    doc: ClassVar[str] = "SyncNet LSE-C: median minus minimum of per-offset mean distances over +-15 frames"
