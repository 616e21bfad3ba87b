"""68-point facial landmark backends, chosen by name (as face-alignment picks its detector).

    backend = get_landmark_backend("dlib")
    track = backend.track(frames)          # LandmarkTrack: (T, 68, 2) points, NaN where no face
"""

from talkface.core.landmarks.base import (
    LANDMARK_BACKENDS,
    LandmarkBackend,
    LandmarkTrack,
    NoFaceError,
    available_landmark_backends,
    get_landmark_backend,
    implausible_frames,
    plausible_face,
    register_landmark_backend,
)

__all__ = [
    "LANDMARK_BACKENDS",
    "LandmarkBackend",
    "LandmarkTrack",
    "NoFaceError",
    "available_landmark_backends",
    "get_landmark_backend",
    "implausible_frames",
    "plausible_face",
    "register_landmark_backend",
]
