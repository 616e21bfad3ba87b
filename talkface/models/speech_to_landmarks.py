"""Stage 1 of Sinha et al. (IJCNN 2020): speech features -> person-independent 68-point landmarks.

Per video frame, the speech window (W x D: 16 x 29 DeepSpeech logits in the paper, 16 x 40 log-mel or
16 x 13 MFCC here when weight-free) goes through a temporal conv encoder over W; a recurrent layer runs
over the frames; a linear head gives the displacement of each of the 68 points from the mean face, the
mean of the training split's aligned landmarks (unit crop coordinates), stored in the checkpoint.
At generation the displacements are scaled by the stage's motion gain (:data:`GAIN_GRID`), fitted at
each validation on the held-out clips (:func:`talkface.train.landmarks.fit_motion_gain`): a model
trained by squared error moves more on clips it has not seen than the real mouth does in step with it,
so its held-out error is lower with the motion damped (regression dilution; docs/models.md, "Voices
never heard").

The paper does not give layer sizes or loss weights; the choices are the fields of
:class:`LandmarkConfig` (saved in every checkpoint) and are listed in docs/models.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from talkface.core.face68 import MOUTH, OPENING_PAIRS
from talkface.models.config import config_from_dict
from talkface.store import checkpoints

log = logging.getLogger("talkface.models.speech_to_landmarks")


N_POINTS = 68


@dataclass
class LandmarkConfig:
    """Every choice of the landmark stage (defaults where the paper is silent)."""

    feature_window: int = 16  # W: read from the dataset
    feature_dim: int = 40  # D: read from the dataset (29 deepspeech, 40 logmel, 13 mfcc)
    feature_backend: str = ""  # read from the manifest
    #: "utterance": features standardised first by each utterance's own mean and std
    #: (utterance_normalised), which removes what a voice, level or channel holds constant over a clip
    #: (docs/models.md, "Voices never heard"), then by the training part's; "dataset": the latter only.
    #: Checkpoints saved before the field existed lack it and load as "dataset" (from_dict)
    feature_norm: str = "utterance"
    #: training only, per window: the feature axis stretched by a factor drawn log-uniformly from this
    #: range (a vocal tract longer or shorter; :func:`warp_feature_axis`), then ``freq_masks`` bands of up
    #: to a fifth of the axis each set to 0 (SpecAugment's frequency masks). (1, 1) and 0: off. Measured
    #: to raise the mouth's correlation with a voice never heard (docs/models.md, "Voices never heard")
    voice_warp: tuple[float, float] = (0.8, 1.25)
    freq_masks: int = 2
    conv_channels: tuple[int, ...] = (64, 128, 128)  # conv1d over W, kernel 3, stride 2 after the first;
    # the last conv's output (channels x W/4) is flattened into the frame embedding
    frame_embedding: int = 128
    rnn: str = "gru"  # gru | lstm
    rnn_hidden: int = 256
    rnn_layers: int = 1
    bidirectional: bool = False  # the 16-frame window already looks 7 frames ahead
    dropout: float = 0.1
    window_len: int = 32  # L: frames per training window (1.28 s at 25 fps)
    window_stride: int = 4
    mouth_weight: float = 4.0  # points 48..67 weigh 4x in the point loss
    temporal_weight: float = 1.0  # weight of the L2 loss on frame-to-frame differences
    opening_weight: float = 0.0  # weight of the L2 loss on the mouth's six vertical lip distances
    weight_decay: float = 0.0
    crop_size: int = 128  # of the training dataset; LMD is reported in these pixels

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LandmarkConfig:
        # a checkpoint saved before a field existed was trained the old way: no voice augmentation, the
        # dataset's standardisation only (resuming it keeps training it that way)
        return config_from_dict(cls, {"feature_norm": "dataset", "voice_warp": (1.0, 1.0), "freq_masks": 0,
                                      **d})


class SpeechToLandmarks(nn.Module):
    """(B, T, W, D) speech windows -> (B, T, 68, 2) unit landmarks = mean face + displacements."""

    def __init__(self, config: LandmarkConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        layers: list[nn.Module] = []
        in_ch = c.feature_dim
        for i, ch in enumerate(c.conv_channels):
            layers += [nn.Conv1d(in_ch, ch, 3, stride=1 if i == 0 else 2, padding=1), nn.LeakyReLU(0.2)]
            in_ch = ch
        self.encoder = nn.Sequential(*layers)
        w_out = c.feature_window
        for _ in range(1, len(c.conv_channels)):
            w_out = (w_out - 1) // 2 + 1
        # Flatten (not pool) the conv output: where in the window a sound falls matters.
        self.embed = nn.Sequential(nn.Linear(in_ch * w_out, c.frame_embedding), nn.LeakyReLU(0.2),
                                   nn.Dropout(c.dropout))
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[c.rnn]
        self.rnn = rnn_cls(c.frame_embedding, c.rnn_hidden, num_layers=c.rnn_layers, batch_first=True,
                           bidirectional=c.bidirectional)
        self.head = nn.Linear(c.rnn_hidden * (2 if c.bidirectional else 1), N_POINTS * 2)
        # Start at the mean face: the untrained model is exactly the mean-face baseline.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("mean_face", torch.full((N_POINTS, 2), 0.5))
        self.register_buffer("feature_mean", torch.zeros(c.feature_dim))
        self.register_buffer("feature_std", torch.ones(c.feature_dim))
        #: scale of the displacements at generation (:func:`predict_landmarks`), fitted on held-out clips
        #: at validation (:func:`talkface.train.landmarks.fit_motion_gain`); 1 until then and in
        #: checkpoints older than it
        self.register_buffer("motion_gain", torch.ones(()))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        state_dict.setdefault(prefix + "motion_gain", torch.ones(()))  # checkpoints made before the gain
        super()._load_from_state_dict(state_dict, prefix, *args)

    def displacements(self, features: torch.Tensor) -> torch.Tensor:
        b, t, w, d = features.shape
        x = (features - self.feature_mean) / self.feature_std
        x = self.encoder(x.reshape(b * t, w, d).transpose(1, 2))  # (B*T, C, W')
        x = self.embed(x.flatten(1)).reshape(b, t, -1)
        x, _ = self.rnn(x)
        return self.head(x).reshape(b, t, N_POINTS, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mean_face + self.displacements(features)


def mouth_openings(points: torch.Tensor) -> torch.Tensor:
    """(..., 68, 2) -> (..., 6) the vertical lip distances of :data:`OPENING_PAIRS`."""
    top = points[..., [a for a, _ in OPENING_PAIRS], :]
    bottom = points[..., [b for _, b in OPENING_PAIRS], :]
    return (top - bottom).norm(dim=-1)


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, mouth_weight: float,
                  temporal_weight: float, opening_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Weighted point L2 (squared error, mouth x ``mouth_weight``) + L2 on frame-to-frame differences
    (+ ``opening_weight`` x squared error of the six lip distances, :func:`mouth_openings`).

    All terms are means over valid frames (a difference needs both its frames valid), in unit crop
    coordinates.
    """
    weights = torch.ones(N_POINTS, device=pred.device)
    weights[MOUTH] = mouth_weight
    weights = weights / weights.mean()
    vf = valid.float()
    sq = ((pred - target) ** 2).sum(-1)  # (B, T, 68)
    point = ((sq * weights).mean(-1) * vf).sum() / vf.sum().clamp_min(1)
    dv = vf[:, 1:] * vf[:, :-1]
    dsq = (((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])) ** 2).sum(-1).mean(-1)
    temporal = (dsq * dv).sum() / dv.sum().clamp_min(1)
    out = {"loss": point + temporal_weight * temporal, "point": point, "temporal": temporal}
    if opening_weight:
        osq = ((mouth_openings(pred) - mouth_openings(target)) ** 2).mean(-1)
        out["opening"] = (osq * vf).sum() / vf.sum().clamp_min(1)
        out["loss"] = out["loss"] + opening_weight * out["opening"]
    return out


def landmark_errors(pred: np.ndarray, target: np.ndarray, valid: np.ndarray,
                    crop_size: int) -> dict[str, float]:
    """Mean per-point Euclidean distance in crop px over valid frames, with no alignment of any kind
    (the crops are already similarity-aligned): all 68 points (``point_error_face``) and the mouth,
    points 48..67 (``point_error_mouth``).

    Not the metric ``lmd_mouth:centroid-mean``, which first centres each frame's mouth on its own
    centroid (so a mouth shifted as a whole costs nothing there); :func:`evaluate_clips` reports that
    one too, computed by the metric's own function, under ``lmd_mouth_centroid_mean``.
    """
    dist = np.linalg.norm(pred[valid] - target[valid], axis=-1) * crop_size  # (N, 68)
    return {"point_error_face": float(dist.mean()), "point_error_mouth": float(dist[:, MOUTH].mean())}


def landmark_model_from_state(state: dict[str, Any], device: str | torch.device = "cpu"
                              ) -> tuple[SpeechToLandmarks, LandmarkConfig, np.ndarray]:
    """(model in eval mode, config, mean face (68, 2) unit coordinates) of a loaded landmarks state."""
    config = LandmarkConfig.from_dict(state["config"])
    model = SpeechToLandmarks(config)
    model.load_state_dict(state["models"]["landmarks"])
    model.to(device).eval()
    return model, config, model.mean_face.detach().cpu().numpy().copy()


def load_landmark_stage(source: str | Path, device: str | torch.device = "cpu"
                        ) -> tuple[SpeechToLandmarks, LandmarkConfig, np.ndarray]:
    """:func:`landmark_model_from_state` of a ``.pt`` file or of the landmarks run in a folder."""
    return landmark_model_from_state(checkpoints.load_stage(source, "landmarks").state, device)


FEATURE_NORMS = ("dataset", "utterance")


def utterance_normalised(features: np.ndarray) -> np.ndarray:
    """(T, W, D) features of one utterance standardised per dimension by their own mean and standard
    deviation over every frame and window position (floor 1e-3). An affine change of a dimension that
    holds over the utterance (a voice's spectral tilt, the level, the microphone) leaves the result
    unchanged; the model's dataset-wide standardisation follows."""
    f = np.asarray(features, dtype=np.float32)
    flat = f.reshape(-1, f.shape[-1])
    return ((f - flat.mean(axis=0)) / np.maximum(flat.std(axis=0), 1e-3)).astype(np.float32)


def warp_feature_axis(features: np.ndarray, factor: float) -> np.ndarray:
    """(..., D) features resampled along D (linear interpolation): bin ``d`` takes the value at
    ``d / factor``, clamped to the axis. On a mel or DeepSpeech-like axis, ``factor`` > 1 moves energy to
    higher bins, as a shorter vocal tract does to formants (vocal tract length perturbation, Jaitly and
    Hinton 2013, applied to the feature axis)."""
    f = np.asarray(features, np.float32)
    d = f.shape[-1]
    src = np.clip(np.arange(d, dtype=np.float64) / factor, 0, d - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, d - 1)
    w = (src - lo).astype(np.float32)
    return f[..., lo] * (1 - w) + f[..., hi] * w


def augment_voice(features: np.ndarray, rng: np.random.Generator, warp: tuple[float, float],
                  freq_masks: int) -> np.ndarray:
    """One training window's features as another voice might give them: the axis warped by a factor
    log-uniform in ``warp`` (:func:`warp_feature_axis`), then ``freq_masks`` random bands (each up to a
    fifth of the axis wide) zeroed (the standardised features' mean)."""
    lo, hi = warp
    out = np.array(features, np.float32)
    if hi > lo:
        out = warp_feature_axis(out, float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    d = out.shape[-1]
    for _ in range(freq_masks):
        width = int(rng.integers(0, max(d // 5, 1) + 1))
        start = int(rng.integers(0, d - width + 1))
        out[..., start:start + width] = 0.0
    return out


#: motion gains :func:`talkface.train.landmarks.fit_motion_gain` chooses from
GAIN_GRID = tuple(round(0.4 + 0.05 * i, 2) for i in range(17))  # 0.40 .. 1.20


def with_gain(points: np.ndarray, mean_face: np.ndarray, gain: float) -> np.ndarray:
    """Unit landmarks with their displacements from the mean face scaled by ``gain``."""
    mean = np.asarray(mean_face, np.float32)
    return (mean + np.float32(gain) * (np.asarray(points, np.float32) - mean)).astype(np.float32)


@torch.no_grad()
def predict_landmarks(model: SpeechToLandmarks, features: np.ndarray) -> np.ndarray:
    """(T, W, D) features of one utterance -> (T, 68, 2) unit landmarks (the whole sequence at once),
    displacements scaled by the model's motion gain."""
    if model.config.feature_norm == "utterance":
        features = utterance_normalised(features)
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(features, dtype=np.float32), device=device)[None]
    out = model(x)[0].float().cpu().numpy()
    gain = float(model.motion_gain)
    return out if gain == 1.0 else with_gain(out, model.mean_face.float().cpu().numpy(), gain)
