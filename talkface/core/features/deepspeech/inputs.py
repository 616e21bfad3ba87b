"""DeepSpeech v0.1.0's network input: 26 MFCC per 10 ms, every second frame, 9 frames of context each side.

This follows ``audioToInputVector`` of DeepSpeech v0.1.0 (``util/audio.py``), which VOCA, AD-NeRF and
GeneFace copy: ``python_speech_features.mfcc(audio, samplerate=16000, numcep=26)`` with all other
settings at their defaults (25 ms rectangular window, 10 ms step, 26 filters, 512-point FFT,
pre-emphasis 0.97, lifter 22, log energy as c0) on audio in int16 units; keep frames 0, 2, 4, ...
(50 steps per second); pad 9 zero frames before and after; stack the 19 frames around each step
(past, now, future: 494 values); whiten with the mean and standard deviation of the whole clip's array.
"""

from __future__ import annotations

import numpy as np
import python_speech_features as psf

SAMPLE_RATE = 16000
N_INPUT = 26  # MFCC coefficients per 10 ms frame
N_CONTEXT = 9  # frames of context on each side
STRIDE = 2  # every second MFCC frame: 50 steps per second
STEP_RATE = 100.0 / STRIDE
N_FEATURES = N_INPUT * (2 * N_CONTEXT + 1)  # 494
_MIN_SAMPLES = 400  # one 25 ms analysis window


def to_int16_units(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> the int16 sample values DeepSpeech reads from a 16-bit WAV.

    The scale matters: the global whitening mixes c0 (log energy) with the other cepstra, so float
    audio in [-1, 1] would give different network inputs than the int16 WAV DeepSpeech was trained on.
    """
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        return audio
    scaled = np.round(np.asarray(audio, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def mfcc_frames(audio: np.ndarray) -> np.ndarray:
    """(n_frames, 26) float64 MFCC at 100 Hz, python_speech_features defaults as DeepSpeech uses them."""
    signal = to_int16_units(audio)
    if signal.ndim != 1:
        raise ValueError(f"expected mono audio (samples,), got shape {signal.shape}")
    if len(signal) < _MIN_SAMPLES:
        signal = np.pad(signal, (0, _MIN_SAMPLES - len(signal)))
    return psf.mfcc(signal, samplerate=SAMPLE_RATE, numcep=N_INPUT)


def context_windows(features: np.ndarray) -> np.ndarray:
    """(n_frames, 26) MFCC -> (ceil(n_frames / 2), 494) whitened float32 network inputs."""
    kept = np.asarray(features, dtype=np.float64)[::STRIDE]
    pad = np.zeros((N_CONTEXT, kept.shape[1]), dtype=kept.dtype)
    padded = np.concatenate([pad, kept, pad])
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * N_CONTEXT + 1, axis=0)  # (N, 26, 19)
    stacked = view.transpose(0, 2, 1).reshape(len(kept), -1)  # past..., now, ...future
    std = stacked.std()
    # DeepSpeech divides by the std unguarded; a constant array (never real audio) would give NaN.
    whitened = (stacked - stacked.mean()) / (std if std > 0 else 1.0)
    return whitened.astype(np.float32)


def audio_to_inputs(audio: np.ndarray) -> np.ndarray:
    """Mono 16 kHz audio -> (steps, 494) float32 network inputs, 50 steps per second."""
    return context_windows(mfcc_frames(audio))
