"""Stage 1 of Sinha et al. (IJCNN 2020): speech features -> person-independent 68-point landmarks.

Per video frame, the speech window (W x D: 16 x 29 DeepSpeech logits in the paper, 16 x 40 log-mel or
16 x 13 MFCC here when weight-free) goes through a temporal conv encoder over W; a recurrent layer runs
over the frames; a linear head gives the displacement of each of the 68 points from the mean face, the
mean of the training split's aligned landmarks (unit crop coordinates), stored in the checkpoint.

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
    #: "dataset": features standardised by the training part's mean and std only; "utterance": first by
    #: each utterance's own (utterance_normalised), which removes what a voice, level or channel holds
    #: constant over a clip (docs/models.md, "Voices never heard")
    feature_norm: str = "dataset"
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
        return config_from_dict(cls, d)


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


@torch.no_grad()
def predict_landmarks(model: SpeechToLandmarks, features: np.ndarray) -> np.ndarray:
    """(T, W, D) features of one utterance -> (T, 68, 2) unit landmarks (the whole sequence at once)."""
    if model.config.feature_norm == "utterance":
        features = utterance_normalised(features)
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(features, dtype=np.float32), device=device)[None]
    return model(x)[0].float().cpu().numpy()
