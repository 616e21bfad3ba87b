"""DeepSpeech v0.1.0 speech features in PyTorch, weights read from ``output_graph.pb`` without TensorFlow.

Importing this package registers the ``deepspeech`` feature backend.
"""

from talkface.core.features.deepspeech.backend import DeepSpeechBackend
from talkface.core.features.deepspeech.graphdef import (
    RELEASE_HINT,
    DeepSpeechModelError,
    DeepSpeechWeights,
    load_weights,
)
from talkface.core.features.deepspeech.inputs import audio_to_inputs
from talkface.core.features.deepspeech.model import DeepSpeechAcoustic

__all__ = [
    "RELEASE_HINT",
    "DeepSpeechAcoustic",
    "DeepSpeechBackend",
    "DeepSpeechModelError",
    "DeepSpeechWeights",
    "audio_to_inputs",
    "load_weights",
]
