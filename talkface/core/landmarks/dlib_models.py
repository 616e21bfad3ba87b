"""Locate the dlib model files that the ``face_recognition_models`` package ships.

``import face_recognition_models`` fails on current setuptools (it imports ``pkg_resources``), so the
folder is found through the import system without executing the package.

Licence: ``shape_predictor_68_face_landmarks.dat`` is trained on iBUG 300-W, whose licence excludes
commercial use; the other dlib models are public domain / CC0 (see README, "Model licences").
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MODEL_FILES = {
    "shape_68": "shape_predictor_68_face_landmarks.dat",
    "shape_5": "shape_predictor_5_face_landmarks.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
    "face_descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}


def dlib_model_path(key: str) -> Path:
    """Path of a bundled dlib model file; a clear error says what to install when it is missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The dlib model files come from the 'face_recognition_models' package: "
            "pip install face_recognition_models"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILES[key]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall face_recognition_models")
    return path
