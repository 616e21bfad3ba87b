"""Training data from a prepared dataset: its parts, clip arrays, windows of consecutive frames.

Which clips train and validate is the dataset contract's answer (:mod:`talkface.store.dataset`):
``Dataset.parts(protocol)`` gives the usable clips of a protocol the store holds (its own by default),
and a protocol without 'val' clips gets the contract's seeded hash split of the training clips. This
module only turns those clips into arrays.

Everything here is in the aligned crop frame: ``landmarks_aligned`` (T, 68, 2) crop pixels divided by
the dataset's crop size, so unit coordinates in [0, 1] and a 128 px and a 256 px dataset share a model.
Frames without a face (``face_found`` False, or NaN points) are kept in the windows but masked out of
losses, so windows stay contiguous in time.

Clips are held in memory (a GRID clip is ~110 KB of landmarks and float16 features), which keeps the
loader free of file I/O; a corpus of tens of thousands of clips needs a few GB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from talkface.store.dataset import Dataset as PreparedDataset
from talkface.store.dataset import DatasetError, Parts
from talkface.train.loop import Stage, TrainSettings

T = TypeVar("T")
log = logging.getLogger("talkface.train.data")


@dataclass
class ClipArrays:
    """One clip's training arrays: unit landmarks (NaN-free), validity mask, float32 features."""

    clip_id: str
    speaker: str
    landmarks: np.ndarray  # (T, 68, 2) float32 in unit crop coordinates
    valid: np.ndarray  # (T,) bool: a face was found and all points are finite
    features: np.ndarray  # (T, W, D) float32
    crop_size: int


def open_dataset(data: str | os.PathLike | PreparedDataset) -> PreparedDataset:
    """The prepared dataset at ``data`` (a ``DatasetError`` in one sentence when it is not one)."""
    return data if isinstance(data, PreparedDataset) else PreparedDataset.open(data)


def training_parts(dataset: PreparedDataset, protocol: str | None, seed: int,
                   resume_state: dict[str, Any] | None = None) -> Parts:
    """The train/val clips a stage uses: ``protocol`` (the store's own when None; on resume, the
    protocol the run was trained on), 'val' from a seeded hash split of 'train' when it has none, and
    with a single usable clip (nothing to hold out) the training clip itself, said in a warning and
    recorded (``val_is_train`` in :func:`dataset_info`, hence in metrics.jsonl and the summaries).

    ``DatasetError`` (one sentence) when the store lacks the protocol or it has no usable train clips.
    """
    trained_on = ((resume_state or {}).get("dataset") or {}).get("protocol")
    if trained_on and protocol and protocol != trained_on:
        raise DatasetError(f"the run being resumed was trained on protocol {trained_on!r}, not {protocol!r}: "
                           "resume without --protocol, or train into another --out")
    parts = dataset.parts(protocol or trained_on, val_fallback_seed=seed)
    if not parts.train:
        others = [p for p in dataset.protocols() if p != parts.protocol]
        corpus = dataset.corpus or "<corpus>"
        hint = (f"; train on another protocol it holds (--protocol {' | '.join(others)})" if others else
                ", and it is the only protocol the dataset holds: add one with training clips, e.g. "
                f"`talkface prepare {corpus} <corpus folder> --protocol seen --out {dataset.root}`")
        raise DatasetError(f"{dataset.root}: protocol {parts.protocol!r} has no usable 'train' clips "
                           f"({_counts(parts)}){hint}")
    if not parts.val:  # one usable clip: validation can only run on it, and says so
        parts.val = list(parts.train)
        log.warning("%s: protocol %r has %d usable clip(s) and none to hold out: validation runs on the "
                    "training clip(s) %s, so its numbers measure fitting, not generalisation (marked "
                    "val_is_train in metrics.jsonl)", dataset.root, parts.protocol, len(parts.train),
                    ", ".join(parts.train))
    return parts


class DatasetStage(Stage):
    """A training stage over one protocol of a prepared dataset: holds the dataset, the protocol (None:
    the dataset's own, or the one a resumed run was trained on) and the stage's config (``config_type``
    when none is given), and resolves the train/val/test parts at setup, in one place for every stage."""

    config_type: type

    def __init__(self, data: str | os.PathLike | PreparedDataset, protocol: str | None = None,
                 config: Any = None) -> None:
        self.dataset = open_dataset(data)
        self.protocol = protocol
        self.config = config if config is not None else self.config_type()

    def resolve_parts(self, settings: TrainSettings, resume_state: dict[str, Any] | None) -> Parts:
        self.parts = training_parts(self.dataset, self.protocol, settings.seed, resume_state)
        return self.parts


def _counts(parts: Parts) -> str:
    held = [f"{p} {n}" for p, n in parts.counts().items() if n]
    return "usable clips: " + ", ".join(held) if held else "no usable clips"


def dataset_info(dataset: PreparedDataset, parts: Parts, **counts: int) -> dict[str, Any]:
    """What a checkpoint records about its data: root, protocol, the dataset's info, clip counts."""
    return {"root": str(Path(dataset.root).resolve()), "protocol": parts.protocol,
            "info": dataset.info.to_dict(), "settings": dataset.info.settings,
            "n_train_clips": len(parts.train), "n_val_clips": len(parts.val),
            "val_from_train": parts.val_from_train,
            "val_is_train": bool(parts.val) and set(parts.val) <= set(parts.train), **counts}


def load_clip_arrays(dataset: PreparedDataset, clip_id: str) -> ClipArrays:
    data = dataset.load_clip(clip_id)
    crop_size = dataset.crop_size
    points = np.asarray(data["landmarks_aligned"], dtype=np.float32) / np.float32(crop_size)
    valid = np.isfinite(points).all(axis=(1, 2))
    if "face_found" in data:
        valid &= np.asarray(data["face_found"], dtype=bool)
    points = np.where(np.isfinite(points), points, 0.0).astype(np.float32)
    feats = np.asarray(data["audio_features"], dtype=np.float32)
    if len(feats) != len(points):
        raise ValueError(f"clip {clip_id}: {len(feats)} feature frames but {len(points)} landmark frames")
    return ClipArrays(clip_id=clip_id, speaker=dataset.record(clip_id).speaker, landmarks=points, valid=valid,
                      features=feats, crop_size=crop_size)


def load_clips(dataset: PreparedDataset, clip_ids: list[str]) -> list[ClipArrays]:
    """Load clips; a clip whose arrays cannot be read is skipped with a logged reason."""
    out = []
    for cid in clip_ids:
        try:
            out.append(load_clip_arrays(dataset, cid))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("skipping clip %s: %s", cid, exc)
    return out


#: At most this many passes over a speaker's own items when balancing, and only speakers with at least
#: this share of the largest speaker's items are drawn more often: a speaker with a handful of clips is
#: kept as it is, not repeated until the stage memorises it.
MAX_SPEAKER_REPEAT = 4
MIN_BALANCED_SHARE = 0.1


def balance_by_speaker(items: list[T], speaker_of: Callable[[T], str], max_repeat: int = MAX_SPEAKER_REPEAT,
                       min_share: float = MIN_BALANCED_SHARE) -> list[T]:
    """``items`` with the speakers' shares evened out: each speaker's items repeated in turn (cycling) up
    to the largest speaker's count, at most ``max_repeat`` passes over its own items, for speakers with at
    least ``min_share`` of the largest speaker's items (others once). So a sampler drawing uniformly from
    the list draws s4's 50 clips as often as s1's 125, while a one-clip speaker does not take a share of
    its own. One speaker: ``items`` unchanged. Order: speakers in order of first appearance."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(speaker_of(item), []).append(item)
    if len(groups) <= 1:
        return list(items)
    return [g[i % len(g)] for g in groups.values() for i in range(balanced_count(len(g), groups, max_repeat,
                                                                                 min_share))]


def balanced_count(n: int, groups: dict[str, list[Any]] | dict[str, int],
                   max_repeat: int = MAX_SPEAKER_REPEAT, min_share: float = MIN_BALANCED_SHARE) -> int:
    """How many items a speaker with ``n`` gets in :func:`balance_by_speaker` (``groups``: every speaker's
    items, or their counts)."""
    most = max(v if isinstance(v, int) else len(v) for v in groups.values())
    return min(most, max_repeat * n) if n >= min_share * most else n


class WindowDataset(Dataset):
    """Windows of ``length`` consecutive frames, every ``stride`` frames, over each clip.

    Item: ``features`` (L, W, D) float32, ``landmarks`` (L, 68, 2) unit crop coordinates, ``valid`` (L,)
    bool, ``clip`` (index into ``clips``), ``start`` frame. A clip shorter than ``length`` gives one
    window padded at the end with invalid frames (so short clips still train). With several speakers,
    the windows are balanced by speaker (:func:`balance_by_speaker`).
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
        self.index = balance_by_speaker(self.index, lambda item: clips[item[0]].speaker)

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
