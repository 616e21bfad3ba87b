"""Reference landmarks kept beside the results, so a second method scored against the same reference
clips does not detect them again.

``talkface evaluate`` tracks landmarks on the reference frames of every clip for the landmark metrics
(LMD, blinks, the dlib identity). Those points depend only on the reference crop, the frames scored
(``--trim`` may cut them), and the landmark backend's settings, never on the method, so they are cached
in ``<results>/cache/reference_landmarks/<key>.npz``:

- ``key``: 32 hex digits of SHA-256 over canonical JSON of the reference file's SHA-256 (its bytes, so
  a copied or moved dataset still hits), the number and size of the reference frames scored, the
  landmark backend's full settings (detector, predictor SHA-256, dlib version, ...), the cache format
  and the talkface version;
- the file holds ``points`` ((T, 68, 2) float32, NaN where no face: exactly what the backend returned)
  and ``key_json``, the text the key was hashed from; a file whose ``key_json`` differs, or that cannot
  be read, is a miss (recomputed and rewritten), never an error.

Workers only read the cache; the process that runs ``evaluate`` writes it (atomically: temporary file,
then rename), as it alone writes the results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkface import __version__
from talkface.utils import atomic
from talkface.utils.provenance import sha256_file

#: Where the cache lives inside a results folder.
CACHE_SUBDIR = Path("cache") / "reference_landmarks"
#: Bumped when the file layout or what the points mean changes.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ReferenceLandmarkCache:
    """``folder/<key>.npz`` for one landmark backend's settings (picklable: a path and a dict)."""

    folder: Path
    settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def beside(cls, results: str | Path, settings: Mapping[str, Any]) -> ReferenceLandmarkCache:
        """The cache of the results folder ``results``."""
        return cls(Path(results) / CACHE_SUBDIR, dict(settings))

    def key_json(self, reference: str | Path, n_frames: int, size_hw: tuple[int, int]) -> str:
        return json.dumps(
            {
                "format": CACHE_FORMAT,
                "reference_sha256": sha256_file(reference),
                "frames": int(n_frames),
                "size_hw": [int(size_hw[0]), int(size_hw[1])],
                "landmarks": dict(self.settings),
                "talkface_version": __version__,
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )

    @staticmethod
    def key_of(key_json: str) -> str:
        return hashlib.sha256(key_json.encode("utf-8")).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key_json: str) -> np.ndarray | None:
        """The cached points, or None on a miss (absent, unreadable, or another key's text)."""
        path = self.path(self.key_of(key_json))
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key_json"]) != key_json:
                    return None
                return np.array(data["points"])
        except Exception:  # noqa: BLE001 - absent, truncated, not an npz: recompute
            return None

    def save(self, key_json: str, points: np.ndarray) -> Path:
        path = self.path(self.key_of(key_json))
        atomic.save_npz(path, points=np.asarray(points), key_json=np.array(key_json))
        return path
