"""The prepared dataset on disk: ``manifest.parquet``, ``clips/<id>.npz``, ``crops/<id>.mp4``.

Layout (DESIGN.md, "Dataset dir")::

    <root>/talkface_dataset.json     settings the dataset was prepared with (checked on resume)
    <root>/manifest.parquet          one row per clip (MANIFEST_COLUMNS)
    <root>/clips/<clip_id>.npz       landmarks, face_found, transform, landmarks_aligned,
                                     audio_features, words
    <root>/crops/<clip_id>.mp4       aligned face crops with the clip's audio
    <root>/rows/<clip_id>.json       the manifest row of each finished clip (the manifest is rebuilt
                                     from these, so a killed run loses nothing)

Every file is written atomically; a clip whose row exists is finished and is skipped on resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from talkface.utils import atomic

MANIFEST_COLUMNS = [
    "clip_id",
    "corpus",
    "speaker",
    "split",
    "source_video",
    "source_audio",
    "n_frames",
    "fps",
    "duration_s",
    "transcript",
    "status",  # ok | partial | failed
    "error",
    "flags",  # ';'-joined notes that do not fail a clip, e.g. no_alignment, audio_padded
    "face_ratio",
    "landmark_backend",
    "feature_backend",
    "feature_model_sha256",
    "crop_size",
    "talkface_version",
]

SETTINGS_FILE = "talkface_dataset.json"


class SettingsMismatch(RuntimeError):
    """An output folder already holds a dataset prepared with other settings."""


@dataclass
class DatasetStore:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # paths ---------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    def clip_path(self, clip_id: str) -> Path:
        return self.root / "clips" / f"{clip_id}.npz"

    def crop_path(self, clip_id: str) -> Path:
        return self.root / "crops" / f"{clip_id}.mp4"

    def row_path(self, clip_id: str) -> Path:
        return self.root / "rows" / f"{clip_id}.json"

    # settings ------------------------------------------------------------------------------------
    def read_settings(self) -> dict[str, Any] | None:
        path = self.root / SETTINGS_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def claim(self, settings: dict[str, Any], overwrite: bool = False) -> None:
        """Record ``settings`` for a new dataset, or check they equal the existing dataset's.

        Raises :class:`SettingsMismatch` naming each differing setting (``--overwrite`` replaces them).
        """
        existing = self.read_settings()
        if existing is not None and not overwrite:
            diffs = diff_settings(existing, settings)
            if diffs:
                lines = "\n".join(f"  {k}: prepared with {a!r}, asked for {b!r}" for k, a, b in diffs)
                raise SettingsMismatch(
                    f"{self.root} was prepared with other settings:\n{lines}\n"
                    "Use another --out folder, or --overwrite to redo every clip with the new settings."
                )
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.root / SETTINGS_FILE, settings)

    # rows and manifest ---------------------------------------------------------------------------
    def is_done(self, clip_id: str) -> bool:
        return self.row_path(clip_id).exists()

    def write_row(self, row: dict[str, Any]) -> None:
        atomic.write_json(self.row_path(row["clip_id"]), row)

    def rows(self) -> list[dict[str, Any]]:
        folder = self.root / "rows"
        if not folder.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    def write_manifest(self, split_of: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Rebuild ``manifest.parquet`` from the per-clip rows (atomic).

        ``split_of`` (clip id -> split) overrides the rows' split column: a rerun with another split
        protocol re-labels finished clips without redoing them.
        """
        df = rows_to_frame(self.rows())
        if split_of:
            df["split"] = [split_of.get(c, s) for c, s in zip(df.clip_id, df.split, strict=True)]
        with atomic.atomic_path(self.manifest_path) as tmp:
            df.to_parquet(tmp, index=False)
        return df

    def read_manifest(self) -> pd.DataFrame:
        if self.manifest_path.exists():
            return pd.read_parquet(self.manifest_path)
        return rows_to_frame(self.rows())

    # clip data -----------------------------------------------------------------------------------
    def write_clip(self, clip_id: str, **arrays: Any) -> None:
        atomic.save_npz(self.clip_path(clip_id), **arrays)

    def load_clip(self, clip_id: str) -> dict[str, np.ndarray]:
        path = self.clip_path(clip_id)
        if not path.exists():
            raise FileNotFoundError(f"no prepared data for clip {clip_id!r} in {self.root}")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def remove_clip(self, clip_id: str) -> None:
        for p in (self.row_path(clip_id), self.clip_path(clip_id), self.crop_path(clip_id)):
            if p.exists():
                os.remove(p)


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for col in ("n_frames",):
        df[col] = df[col].astype("Int64")
    for col in ("fps", "duration_s", "face_ratio"):
        df[col] = df[col].astype("float64")
    return df.sort_values("clip_id").reset_index(drop=True)


def diff_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Differing leaves of two nested settings dicts, ignoring the talkface version."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(old) | set(new)):
        if key in ("talkface_version", "created"):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_settings(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def words_array(words: list[tuple[float, float, str]]) -> np.ndarray:
    """Words as a structured array that ``np.load(allow_pickle=False)`` can read."""
    dtype = np.dtype([("start_s", "<f8"), ("end_s", "<f8"), ("word", "<U32")])
    return np.array([(float(s), float(e), str(w)) for s, e, w in words], dtype=dtype)
