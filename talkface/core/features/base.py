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

