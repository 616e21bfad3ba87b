"""The ``deepspeech`` feature backend: DeepSpeech v0.1.0 logits at 50 Hz, windowed per video frame.

    backend = get_feature_backend("deepspeech", model_path="models/output_graph.pb")
    feats = backend.compute(audio_16k, n_frames=75, fps=25.0)        # (75, 16, 29) float32

The logits (raw, before softmax, as VOCA reads the graph's ``logits`` tensor) at step i belong to time
i / 50 s; they are linearly interpolated onto the frame times k / fps and windowed 16 per frame
(8 before, the frame, 7 after, zero-padded), exactly VOCA's ``interpolate_features`` and window loop.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talkface.core.features.base import FeatureBackend, register_feature_backend
from talkface.core.features.deepspeech.graphdef import (
    RELEASE_HINT,
    DeepSpeechModelError,
    load_weights,
)
from talkface.core.features.deepspeech.inputs import STEP_RATE, audio_to_inputs
from talkface.core.features.deepspeech.model import DeepSpeechAcoustic
from talkface.core.features.windowing import interpolate_to_frames, window_frames
from talkface.utils.provenance import sha256_file


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> the first CUDA GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, keep cuDNN's LSTM in true float32 (no TF32), so GPU logits match the CPU's to ~1e-6."""
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cudnn.allow_tf32 = previous


@register_feature_backend("deepspeech")
class DeepSpeechBackend(FeatureBackend):
    """DeepSpeech v0.1.0 character logits (29-d, 50 Hz) from the released ``output_graph.pb``."""

    name = "deepspeech"
    dim = 29
    rate = STEP_RATE

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 64,
        window: int = 16,
        sample_rate: int = 16000,
        max_batch_seconds: float = 240.0,
    ) -> None:
        if model_path is None:
            raise DeepSpeechModelError(f"the deepspeech backend needs model_path. {RELEASE_HINT}")
        if sample_rate != 16000:
            raise ValueError("DeepSpeech v0.1.0 takes 16 kHz audio; resample first (read_audio(sr=16000))")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_batch_seconds <= 0:
            raise ValueError("max_batch_seconds must be > 0")
        self.model_path = Path(model_path)
        weights = load_weights(self.model_path)  # raises DeepSpeechModelError with the reason
        self.model_sha256 = sha256_file(self.model_path)
        self.device = resolve_device(device)
        self.model = DeepSpeechAcoustic(weights).to(self.device).eval()
        self.n_hidden = weights.n_hidden
        self.n_cell = weights.n_cell
        self.batch_size = batch_size
        self.max_batch_seconds = max_batch_seconds
        self.window = window
        self.sample_rate = sample_rate

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "model": "DeepSpeech v0.1.0 acoustic model (output_graph.pb), logits before softmax",
            "model_file": self.model_path.name,
            "model_sha256": self.model_sha256,
            "n_hidden": list(self.n_hidden),
            "n_cell": self.n_cell,
            "inputs": "psf.mfcc numcep=26 on int16-scaled audio, stride 2, context 9, whitened per clip",
            "interpolation": "linear, step i at i/50 s -> frame k at k/fps (VOCA)",
            "window_convention": "frames k-8..k+7, zero-padded (VOCA)",
        }

    @torch.inference_mode()
    def logits_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Logits (steps_i, 29) at 50 Hz per clip; up to ``batch_size`` clips at a time (longest first,
        padded and packed), fewer where the padded batch would exceed ``max_batch_seconds`` of audio.

        Why 64: the recurrence's per-step GEMM has one row per clip, and the share of this CPU's GEMM
        rate it reaches grows with rows (``benchmarks/bench_deepspeech.py``'s batch sweep:
        docs/deepspeech.md); the seconds cap keeps memory bounded for long clips (activations grow
        with clips x the longest clip's length)."""
        inputs = [audio_to_inputs(np.asarray(a)) for a in audios]
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]), reverse=True)
        out: list[np.ndarray | None] = [None] * len(inputs)
        for chunk in self._batches([len(inputs[i]) for i in order], order):
            lengths = [len(inputs[i]) for i in chunk]
            batch = np.zeros((len(chunk), max(lengths), inputs[chunk[0]].shape[1]), dtype=np.float32)
            for row, i in enumerate(chunk):
                batch[row, : lengths[row]] = inputs[i]
            with exact_float32(self.device):
                logits = self.model(
                    torch.from_numpy(batch).to(self.device), torch.tensor(lengths, dtype=torch.int64)
                )
            logits = logits.float().cpu().numpy()
            for row, i in enumerate(chunk):
                out[i] = logits[row, : lengths[row]].copy()
        return out  # type: ignore[return-value]

    def _batches(self, lengths: Sequence[int], order: Sequence[int]) -> list[list[int]]:
        """``order`` (longest first; ``lengths`` in that order, in steps) cut into forwards of at most
        ``batch_size`` clips whose padded size (clips x the first clip's steps) stays within
        ``max_batch_seconds`` (a clip longer than that alone is one forward)."""
        cap_steps = self.max_batch_seconds * self.rate
        batches: list[list[int]] = []
        longest = 0  # steps of the current batch's first (longest) clip
        for i, steps in zip(order, lengths, strict=True):
            size = len(batches[-1]) if batches else self.batch_size
            if size < self.batch_size and (size + 1) * longest <= cap_steps:
                batches[-1].append(i)
            else:
                batches.append([i])
                longest = steps
        return batches

    def sequence(self, audio: np.ndarray) -> np.ndarray:
        return self.logits_batch([audio])[0]

    def compute_batch(
        self, audios: Sequence[np.ndarray], n_frames: Sequence[int], fps: Sequence[float]
    ) -> list[np.ndarray]:
        if not (len(audios) == len(n_frames) == len(fps)):
            raise ValueError("audios, n_frames and fps must have the same length")
        logits = self.logits_batch(audios)
        return [
            window_frames(interpolate_to_frames(seq, self.rate, n, f), self.window)
            for seq, n, f in zip(logits, n_frames, fps, strict=True)
        ]
