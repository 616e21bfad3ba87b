"""The feature backend interface and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from talkface.core.features.windowing import interpolate_to_frames, window_frames
from talkface.registry import Registry


class FeatureBackend(ABC):
    """Audio (mono float32, ``sample_rate`` Hz) -> (T, window, dim) float32 for T video frames."""

    name: str = ""
    sample_rate: int = 16000
    window: int = 16
    dim: int = 0
    rate: float = 100.0  # native feature rate (frames per second) before interpolation

    @abstractmethod
    def sequence(self, audio: np.ndarray) -> np.ndarray:
        """Native-rate features (N, dim) for one clip's audio."""

    def settings(self) -> dict[str, Any]:
        """Everything that changes the output; stored with the dataset and checked on resume."""
        return {"backend": self.name, "window": self.window, "dim": self.dim, "rate": self.rate}

    def compute(self, audio: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
        seq = self.sequence(np.asarray(audio, dtype=np.float32))
        return window_frames(interpolate_to_frames(seq, self.rate, n_frames, fps), self.window)

    def compute_batch(
        self, audios: Sequence[np.ndarray], n_frames: Sequence[int], fps: Sequence[float]
    ) -> list[np.ndarray]:
        """Several clips at once; backends with a neural model override this to batch."""
        return [self.compute(a, n, f) for a, n, f in zip(audios, n_frames, fps, strict=True)]


Factory = Callable[..., FeatureBackend]

FEATURE_BACKENDS: Registry[Factory] = Registry("feature backend")
FEATURE_BACKENDS.register_lazy("deepspeech", "talkface.core.features.deepspeech")


def register_feature_backend(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make a backend available as ``get_feature_backend(name)``."""
    return FEATURE_BACKENDS.register(name)


def available_feature_backends() -> list[str]:
    return FEATURE_BACKENDS.names()


def get_feature_backend(name: str, **options: Any) -> FeatureBackend:
    """Instantiate a backend by name; options are backend-specific (e.g. ``model_path``).

    An unknown name raises ``UnknownName`` (a KeyError) listing the known ones.
    """
    return FEATURE_BACKENDS.get(name)(**options)



# -- silence -------------------------------------------------------------------------------------

#: Audio whose loud part stays under this level is silence, not speech: a muted or empty track, or
#: a lost one filled with zeros. The level (:func:`audio_level_dbfs`) is the 95th percentile of the
#: RMS of the clip's 25 ms frames, in dB relative to full scale (1.0; a full-scale sine is -3 dBFS):
#: the level its loudest 5% reach, so one click in a silent clip does not make it speech, and speech
#: over a short part of a clip still counts. On the fixtures speech reaches -25 (VoxCeleb-style
#: ``00098``, a quiet speaker) to -5 dBFS and GRID's room noise between words lies at -41 to -22
#: dBFS, so -50 keeps 25 dB from the quietest speech and flags no clip that has a recording in it
#: (a clip of only room noise is not flagged: it is not silence).
SILENT_AUDIO_DBFS = -50.0
LEVEL_FRAME_S = 0.025
LEVEL_PERCENTILE = 95.0
_LEVEL_FLOOR_DBFS = -120.0  # digital silence: log of zero


def audio_level_dbfs(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """The level a clip's loud part reaches (see ``SILENT_AUDIO_DBFS``), in dBFS; -120 for zeros."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    n = max(int(round(LEVEL_FRAME_S * sample_rate)), 1)
    if len(x) == 0:
        return _LEVEL_FLOOR_DBFS
    frames = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else x[None]
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    level = float(np.percentile(rms, LEVEL_PERCENTILE))
    return max(20.0 * np.log10(level), _LEVEL_FLOOR_DBFS) if level > 0 else _LEVEL_FLOOR_DBFS


def is_silent(audio: np.ndarray, sample_rate: int = 16000) -> bool:
    """True when the audio is silence, not speech (``SILENT_AUDIO_DBFS``)."""
    return audio_level_dbfs(audio, sample_rate) < SILENT_AUDIO_DBFS
