"""Weight-free features: log-mel energies and MFCC (python_speech_features, as DeepSpeech does).

Both use 25 ms windows every 10 ms (100 Hz) and a 512-point FFT; they differ only in the final
transform, so they share one base class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import python_speech_features as psf

from talkface.preprocess.features.base import FeatureBackend, register_feature_backend

WINLEN_S = 0.025
WINSTEP_S = 0.01
NFFT = 512


class _FrameFeatures(FeatureBackend):
    """A python_speech_features transform at 100 Hz; subclasses name the transform."""

    rate = 1 / WINSTEP_S

    def __init__(self, dim: int, window: int = 16, sample_rate: int = 16000) -> None:
        self.dim = dim
        self.window = window
        self.sample_rate = sample_rate

    def _transform(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sequence(self, audio: np.ndarray) -> np.ndarray:
        min_len = int(WINLEN_S * self.sample_rate)
        if len(audio) < min_len:  # shorter than one analysis window: pad so one frame exists
            audio = np.pad(audio, (0, min_len - len(audio)))
        return self._transform(audio).astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "winlen_s": WINLEN_S, "winstep_s": WINSTEP_S, "nfft": NFFT}


@register_feature_backend("logmel")
class LogMel(_FrameFeatures):
    """Log mel filterbank energies, ``n_mels`` bands."""

    name = "logmel"

    def __init__(self, n_mels: int = 40, window: int = 16, sample_rate: int = 16000) -> None:
        super().__init__(n_mels, window, sample_rate)

    def _transform(self, audio: np.ndarray) -> np.ndarray:
        return psf.logfbank(audio, samplerate=self.sample_rate, winlen=WINLEN_S, winstep=WINSTEP_S,
                            nfilt=self.dim, nfft=NFFT)


@register_feature_backend("mfcc")
class Mfcc(_FrameFeatures):
    """MFCC (log energy as c0), ``n_mfcc`` coefficients, as DeepSpeech and SyncNet pipelines use."""

    name = "mfcc"

    def __init__(self, n_mfcc: int = 13, window: int = 16, sample_rate: int = 16000) -> None:
        super().__init__(n_mfcc, window, sample_rate)

    def _transform(self, audio: np.ndarray) -> np.ndarray:
        return psf.mfcc(audio, samplerate=self.sample_rate, winlen=WINLEN_S, winstep=WINSTEP_S,
                        numcep=self.dim, nfft=NFFT)
