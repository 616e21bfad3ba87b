"""The landmark backend interface and its registry."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


class NoFaceError(ValueError):
    """An image in which the backend finds no face (e.g. an identity image for generation)."""


@dataclass
class LandmarkTrack:
    """Per-frame landmarks of one video.

    ``points`` (T, 68, 2) float32 in source pixels (x, y), NaN where no face was found;
    ``face_found`` (T,) bool: a face was detected or tracked on that frame (before gap filling);
    ``detected`` (T,) bool: the full face detector ran on that frame (the rest were tracked).
    """

    points: np.ndarray
    face_found: np.ndarray
    detected: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


class LandmarkBackend(ABC):
    name: str = ""

    @abstractmethod
    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) float32 landmarks of the most confident face in an RGB uint8 image, or None."""

    def track(self, frames: Iterable[np.ndarray]) -> LandmarkTrack:
        """Landmarks for a stream of frames. The default detects on every frame; backends may track."""
        pts, found = [], []
        for frame in frames:
            p = self.detect(frame)
            found.append(p is not None)
            pts.append(p if p is not None else np.full((68, 2), np.nan, np.float32))
        n = len(pts)
        points = np.stack(pts).astype(np.float32) if n else np.zeros((0, 68, 2), np.float32)
        f = np.array(found, dtype=bool)
        return LandmarkTrack(points=points, face_found=f, detected=np.ones(n, dtype=bool))

    def settings(self) -> dict[str, Any]:
        """Everything that changes the output; stored with datasets and results."""
        return {"backend": self.name}


_REGISTRY: dict[str, Callable[..., LandmarkBackend]] = {}
_LAZY = {"dlib": "talkface.preprocess.landmarks.dlib_backend"}


def register_landmark_backend(name: str):
    def deco(factory: Callable[..., LandmarkBackend]) -> Callable[..., LandmarkBackend]:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_landmark_backends() -> list[str]:
    return sorted(set(_REGISTRY) | set(_LAZY))


def get_landmark_backend(name: str = "dlib", **options: Any) -> LandmarkBackend:
    if name not in _REGISTRY and name in _LAZY:
        importlib.import_module(_LAZY[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown landmark backend {name!r}; choose from {available_landmark_backends()}")
    return _REGISTRY[name](**options)
