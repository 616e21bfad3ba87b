"""Speech features at the video frame rate, windowed as the paper windows DeepSpeech: (T, W, D).

Backends are chosen by name from a registry::

    backend = get_feature_backend("logmel")
    feats = backend.compute(audio_16k, n_frames=75, fps=25.0)   # (75, 16, 40) float32

The ``deepspeech`` backend registers itself from :mod:`talkface.core.features.deepspeech`.
"""

# The built-in weight-free backends (logmel, mfcc) register on import of this package (importing
# ``talkface.core.features.base`` imports the package first, so they are always there).
from talkface.core.features import spectral  # noqa: F401
from talkface.core.features.base import (
    FEATURE_BACKENDS,
    SILENT_AUDIO_DBFS,
    FeatureBackend,
    audio_level_dbfs,
    available_feature_backends,
    get_feature_backend,
    is_silent,
    register_feature_backend,
)
from talkface.core.features.windowing import interpolate_to_frames, window_frames

__all__ = [
    "FEATURE_BACKENDS",
    "SILENT_AUDIO_DBFS",
    "FeatureBackend",
    "audio_level_dbfs",
    "available_feature_backends",
    "get_feature_backend",
    "interpolate_to_frames",
    "is_silent",
    "register_feature_backend",
    "window_frames",
]
