"""Weight-free features: log-mel energies and MFCC (python_speech_features, as DeepSpeech does).

Both use 25 ms windows every 10 ms (100 Hz) and a 512-point FFT; they differ only in the final
transform, so they share one base class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import python_speech_features as psf

from talkface.core.features.base import FeatureBackend, register_feature_backend

WINLEN_S = 0.025
WINSTEP_S = 0.01
NFFT = 512


class _FrameFeatures(FeatureBackend):
    """A python_speech_features transform at 100 Hz; subclasses name the transform and its size."""

    rate = 1 / WINSTEP_S
    default_dim: ClassVar[int]
    transform: ClassVar[Callable[..., np.ndarray]]  # python_speech_features.logfbank or .mfcc
    dim_keyword: ClassVar[str]  # the transform's name for the output size

    def __init__(self, dim: int | None = None, window: int = 16, sample_rate: int = 16000) -> None:
        self.dim = self.default_dim if dim is None else dim
        self.window = window
        self.sample_rate = sample_rate

    def sequence(self, audio: np.ndarray) -> np.ndarray:
        min_len = int(WINLEN_S * self.sample_rate)
        if len(audio) < min_len:  # shorter than one analysis window: pad so one frame exists
            audio = np.pad(audio, (0, min_len - len(audio)))
        feats = self.transform(audio, samplerate=self.sample_rate, winlen=WINLEN_S, winstep=WINSTEP_S,
                               nfft=NFFT, **{self.dim_keyword: self.dim})
        return feats.astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "winlen_s": WINLEN_S, "winstep_s": WINSTEP_S, "nfft": NFFT}


@register_feature_backend("logmel")
class LogMel(_FrameFeatures):
    """Log mel filterbank energies, ``dim`` bands (40 by default)."""

    name = "logmel"
    default_dim = 40
    transform = staticmethod(psf.logfbank)
    dim_keyword = "nfilt"


@register_feature_backend("mfcc")
class Mfcc(_FrameFeatures):
    """MFCC (log energy as c0), ``dim`` coefficients (13 by default), as DeepSpeech and SyncNet pipelines
    use."""

    name = "mfcc"
    default_dim = 13
    transform = staticmethod(psf.mfcc)
    dim_keyword = "numcep"
