"""Weight-free features: log-mel energies and MFCC (python_speech_features, as DeepSpeech does)."""

from __future__ import annotations

from typing import Any

import numpy as np
import python_speech_features as psf

from talkface.preprocess.features.base import FeatureBackend, register_feature_backend


@register_feature_backend("logmel")
class LogMel(FeatureBackend):
    """Log mel filterbank energies, 25 ms windows every 10 ms (100 Hz), ``n_mels`` bands."""

    name = "logmel"

    def __init__(self, n_mels: int = 40, window: int = 16, sample_rate: int = 16000) -> None:
        self.dim = n_mels
        self.window = window
        self.sample_rate = sample_rate
        self.rate = 100.0

    def sequence(self, audio: np.ndarray) -> np.ndarray:
        if len(audio) < 400:
            audio = np.pad(audio, (0, 400 - len(audio)))
        feats = psf.logfbank(
            audio, samplerate=self.sample_rate, winlen=0.025, winstep=0.01, nfilt=self.dim, nfft=512
        )
        return feats.astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "winlen_s": 0.025, "winstep_s": 0.01, "nfft": 512}


@register_feature_backend("mfcc")
class Mfcc(FeatureBackend):
    """13 MFCC (with log energy as c0), 25 ms windows every 10 ms, as DeepSpeech and SyncNet use."""

    name = "mfcc"

    def __init__(self, n_mfcc: int = 13, window: int = 16, sample_rate: int = 16000) -> None:
        self.dim = n_mfcc
        self.window = window
        self.sample_rate = sample_rate
        self.rate = 100.0

    def sequence(self, audio: np.ndarray) -> np.ndarray:
        if len(audio) < 400:
            audio = np.pad(audio, (0, 400 - len(audio)))
        feats = psf.mfcc(
            audio, samplerate=self.sample_rate, winlen=0.025, winstep=0.01, numcep=self.dim, nfft=512
        )
        return feats.astype(np.float32)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "winlen_s": 0.025, "winstep_s": 0.01, "nfft": 512}
