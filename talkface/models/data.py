"""Training data from a prepared store: clip selection by split, windows of consecutive frames.

Everything here is in the aligned crop frame: ``landmarks_aligned`` (T, 68, 2) crop pixels divided by
the clip's crop size, so unit coordinates in [0, 1] and a 128 px and a 256 px dataset share a model.
Frames without a face (``face_found`` False, or NaN points) are kept in the windows but masked out of
losses, so windows stay contiguous in time.

Clips are held in memory (a GRID clip is ~110 KB of landmarks and float16 features), which keeps the
loader free of file I/O; a corpus of tens of thousands of clips needs a few GB.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from talkface.preprocess.store import DatasetStore

log = logging.getLogger("talkface.models.data")

USABLE_STATUS = ("ok", "partial")
VAL_FALLBACK_FRACTION = 0.1


@dataclass
class ClipArrays:
    """One clip's training arrays: unit landmarks (NaN-free), validity mask, float32 features."""

    clip_id: str
    speaker: str
    landmarks: np.ndarray  # (T, 68, 2) float32 in unit crop coordinates
    valid: np.ndarray  # (T,) bool: a face was found and all points are finite
    features: np.ndarray  # (T, W, D) float32
    crop_size: int


def split_column(manifest: pd.DataFrame, split: str) -> str:
    """The manifest column holding train/val/test for ``split``: ``split_<name>`` if the store has one
    (several protocols in one store), else ``split`` (the protocol the store was prepared with)."""
    named = "split_" + split.replace("-", "_")
    return named if named in manifest.columns else "split"


def _hash_fraction(clip_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select_clips(store: DatasetStore, split: str = "seen", seed: int = 0) -> dict[str, list[str]]:
    """Clip ids per part (train/val/test) of ``split``; only usable clips (status ok or partial).

    A store with no 'val' clips gets a seeded per-clip hash split of its training clips
    (``VAL_FALLBACK_FRACTION``, at least one clip), logged, so validation always has data.
    """
    manifest = store.read_manifest()
    if manifest.empty:
        raise ValueError(f"{store.root} has no clips (manifest empty): run `talkface prepare` first")
    usable = manifest[manifest["status"].isin(USABLE_STATUS)]
    if usable.empty:
        raise ValueError(f"{store.root}: no clip has status ok or partial")
    col = split_column(usable, split)
    parts = {p: sorted(usable.loc[usable[col] == p, "clip_id"].astype(str)) for p in ("train", "val", "test")}
    if not parts["train"]:
        raise ValueError(f"{store.root}: no 'train' clips in column '{col}' (split {split!r})")
    if not parts["val"]:
        train = parts["train"]
        ranked = sorted(train, key=lambda c: _hash_fraction(c, seed))
        n_val = max(1, int(round(VAL_FALLBACK_FRACTION * len(train)))) if len(train) > 1 else 0
        val = set(ranked[:n_val])
        parts["val"] = sorted(val)
        parts["train"] = [c for c in train if c not in val]
        log.warning("%s has no 'val' clips for split %r: using a seeded hash split (seed %d) of the "
                    "training clips, %d for validation, %d for training", store.root, split, seed,
                    len(parts["val"]), len(parts["train"]))
    return parts


def load_clip_arrays(store: DatasetStore, clip_id: str, crop_size: int | None = None) -> ClipArrays:
    data = store.load_clip(clip_id)
    if crop_size is None:
        manifest = store.read_manifest()
        row = manifest.loc[manifest["clip_id"] == clip_id]
        crop_size = int(row["crop_size"].iloc[0]) if len(row) and pd.notna(row["crop_size"].iloc[0]) else 128
    points = np.asarray(data["landmarks_aligned"], dtype=np.float32) / np.float32(crop_size)
    valid = np.isfinite(points).all(axis=(1, 2))
    if "face_found" in data:
        valid &= np.asarray(data["face_found"], dtype=bool)
    points = np.where(np.isfinite(points), points, 0.0).astype(np.float32)
    feats = np.asarray(data["audio_features"], dtype=np.float32)
    if len(feats) != len(points):
        raise ValueError(f"clip {clip_id}: {len(feats)} feature frames but {len(points)} landmark frames")
    return ClipArrays(clip_id=clip_id, speaker="", landmarks=points, valid=valid, features=feats,
                      crop_size=int(crop_size))


def load_clips(store: DatasetStore, clip_ids: list[str]) -> list[ClipArrays]:
    """Load clips; a clip whose arrays cannot be read is skipped with a logged reason."""
    manifest = store.read_manifest().set_index("clip_id")
    out = []
    for cid in clip_ids:
        try:
            crop = manifest.at[cid, "crop_size"] if "crop_size" in manifest.columns else None
            crop_size = int(crop) if crop is not None and pd.notna(crop) else 128
            clip = load_clip_arrays(store, cid, crop_size)
            clip.speaker = str(manifest.at[cid, "speaker"]) if "speaker" in manifest.columns else ""
            out.append(clip)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("skipping clip %s: %s", cid, exc)
    return out


def dataset_info(store: DatasetStore, split: str) -> dict[str, Any]:
    """What a checkpoint records about its data: the root and the prepared dataset's settings."""
    return {"root": str(Path(store.root).resolve()), "split": split, "settings": store.read_settings()}


class WindowDataset(Dataset):
    """Windows of ``length`` consecutive frames, every ``stride`` frames, over each clip.

    Item: ``features`` (L, W, D) float32, ``landmarks`` (L, 68, 2) unit crop coordinates, ``valid`` (L,)
    bool, ``clip`` (index into ``clips``), ``start`` frame. A clip shorter than ``length`` gives one
    window padded at the end with invalid frames (so short clips still train).
    """

    def __init__(self, clips: list[ClipArrays], length: int = 32, stride: int = 4) -> None:
        if length < 1 or stride < 1:
            raise ValueError("window length and stride must be >= 1")
        self.clips, self.length, self.stride = clips, length, stride
        self.index: list[tuple[int, int]] = []
        for ci, clip in enumerate(clips):
            t = len(clip.landmarks)
            starts = range(0, max(t - length, 0) + 1, stride) if t >= length else [0]
            self.index.extend((ci, s) for s in starts)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ci, start = self.index[i]
        clip = self.clips[ci]
        sl = slice(start, start + self.length)
        feats, points, valid = clip.features[sl], clip.landmarks[sl], clip.valid[sl]
        pad = self.length - len(points)
        if pad > 0:
            feats = np.concatenate([feats, np.zeros((pad, *feats.shape[1:]), np.float32)])
            points = np.concatenate([points, np.zeros((pad, *points.shape[1:]), np.float32)])
            valid = np.concatenate([valid, np.zeros(pad, bool)])
        return {"features": torch.from_numpy(np.ascontiguousarray(feats)),
                "landmarks": torch.from_numpy(np.ascontiguousarray(points)),
                "valid": torch.from_numpy(np.ascontiguousarray(valid)), "clip": ci, "start": start}


def mean_face(clips: list[ClipArrays]) -> np.ndarray:
    """(68, 2) mean of all valid frames' unit landmarks: the neutral face of the training split."""
    frames = [c.landmarks[c.valid] for c in clips if c.valid.any()]
    if not frames:
        raise ValueError("no valid landmark frames to average")
    return np.concatenate(frames).mean(axis=0).astype(np.float32)


def feature_stats(clips: list[ClipArrays]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the features over training frames (inputs are standardised)."""
    per_frame = np.concatenate([c.features.reshape(-1, c.features.shape[-1]) for c in clips])
    mean = per_frame.mean(axis=0)
    std = per_frame.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def resolve_store(path: str | os.PathLike) -> DatasetStore:
    root = Path(path)
    if not (root / "manifest.parquet").exists() and not (root / "rows").exists():
        raise FileNotFoundError(f"{root} is not a prepared dataset (no manifest.parquet): run `talkface "
                                "prepare <corpus> ... --out <folder>` first")
    return DatasetStore(root)
