"""The writer side of the dataset contract (:mod:`talkface.store.dataset` is the reader).

Only ``prepare`` writes a dataset, through :class:`DatasetStore`:

1. ``claim(settings)``: a new folder gets its :class:`DatasetInfo`; an existing one must have been
   prepared with the same settings (:class:`SettingsMismatch` names each difference).
2. ``add_protocol(name, parts)``: ``splits/<name>.json`` (clip id -> part), merged with what that
   protocol already holds; another protocol's file is never touched. The first protocol becomes the
   dataset's default.
3. per clip: ``write_clip`` (npz), the crop (``crop_path``), then ``write_row`` last: a clip whose row
   exists is finished and is skipped when the run resumes.
4. ``write_manifest()``: ``manifest.parquet`` rebuilt from the rows and the protocol files, and the
   info's per-protocol counts updated.

Every file is written atomically (temporary sibling, then rename) with the mode the umask gives.

**Damage.** A file of the folder that cannot be read (``talkface_dataset.json``, ``splits/<protocol>.json``,
``rows/<id>.json``, the manifest, a clip's npz) is a :class:`DamagedDataset`: the same one sentence,
naming the file and what to do, that the reader (:class:`talkface.store.dataset.DatasetError`) gives for
it, never a reader's traceback.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from talkface.store.dataset import (
    INFO_FILE,
    INFO_FORMAT,
    LEGACY_PROTOCOL,
    MANIFEST_FILE,
    DatasetError,
    DatasetInfo,
    _damaged,
    _legacy_info,
    _read_split_file,
    load_clip_file,
    protocol_counts,
    read_manifest_frame,
    read_rows,
    rows_to_frame,
    split_column,
)
from talkface.utils import atomic
from talkface.utils.paths import PathUnder

SETTINGS_FILE = INFO_FILE  # the old name of the info file
SPLITS_DIR = "splits"


class SettingsMismatch(RuntimeError):
    """An output folder already holds a dataset prepared with other settings."""


class DamagedDataset(DatasetError, SettingsMismatch):
    """A file of the output folder that cannot be read: the reader's :class:`DatasetError` sentence
    (``str()`` names the file and what to do). A :class:`SettingsMismatch` too: like a folder prepared
    with other settings, a folder whose files cannot be read is refused as it is, so everything that
    refuses an ``--out`` folder (``prepare``'s one ``error:`` line) refuses this one."""


#: What to do about a damaged ``talkface_dataset.json``: the words :meth:`Dataset.open` uses.
_INFO_TODO = ("restore it from a copy, or prepare the corpus again into a new folder "
              "(`talkface prepare <corpus> <corpus folder> --out <new folder>`)")


@contextmanager
def _reading() -> Iterator[None]:
    """Reads of the folder's files: a :class:`DatasetError` (damage) becomes a :class:`DamagedDataset`
    with the same sentence."""
    try:
        yield
    except DamagedDataset:
        raise
    except DatasetError as exc:
        raise DamagedDataset(str(exc)) from None


@dataclass
class ProtocolChange:
    """What ``add_protocol`` did: ``added`` (a new protocol), clips ``assigned`` and ``moved``."""

    protocol: str
    added: bool
    assigned: int
    moved: int = 0
    default: bool = False


@dataclass
class DatasetStore:
    """Writes (and, for older callers, reads) one dataset folder."""

    root: Path
    _info: DatasetInfo | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # paths ---------------------------------------------------------------------------------------
    manifest_path = PathUnder("root", MANIFEST_FILE)
    info_path = PathUnder("root", INFO_FILE)

    def clip_path(self, clip_id: str) -> Path:
        return self.root / "clips" / f"{clip_id}.npz"

    def crop_path(self, clip_id: str) -> Path:
        return self.root / "crops" / f"{clip_id}.mp4"

    def row_path(self, clip_id: str) -> Path:
        return self.root / "rows" / f"{clip_id}.json"

    def protocol_path(self, protocol: str) -> Path:
        return self.root / SPLITS_DIR / f"{protocol}.json"

    # info and settings ---------------------------------------------------------------------------
    def _read_info_file(self) -> dict[str, Any] | None:
        """The info file's dict (None when there is none); a damaged one is a :class:`DamagedDataset`."""
        path = self.info_path
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DamagedDataset(str(_damaged(path, exc, _INFO_TODO))) from None
        if not isinstance(raw, dict):
            raise DamagedDataset(f"{path} is damaged (not a dataset description): {_INFO_TODO}")
        return raw

    def read_info(self) -> DatasetInfo | None:
        """The stored info; an older dataset's is derived from its settings and rows."""
        raw = self._read_info_file()
        if raw is None:
            return None
        with _reading():
            if raw.get("format") == INFO_FORMAT:
                return DatasetInfo.from_dict(raw)
            manifest = read_manifest_frame(self.root)
            return _legacy_info(raw, manifest if manifest is not None else rows_to_frame([]))

    def read_settings(self) -> dict[str, Any] | None:
        """The prepare settings the dataset was made with (None for a new folder)."""
        raw = self._read_info_file()
        if raw is None:
            return None
        return dict(raw.get("settings") or {}) if raw.get("format") == INFO_FORMAT else raw

    def claim(self, settings: dict[str, Any], overwrite: bool = False) -> DatasetInfo:
        """Record ``settings`` for a new dataset, or check they equal the existing dataset's.

        Raises :class:`SettingsMismatch` naming each differing setting (``overwrite`` replaces them).
        An older dataset's settings file is upgraded to a :class:`DatasetInfo` here, its one split
        column becoming a protocol file.
        """
        existing = self.read_info()
        if existing is not None and not overwrite:
            diffs = diff_settings(existing.settings, settings)
            if diffs:
                lines = "\n".join(f"  {k}: prepared with {a!r}, asked for {b!r}" for k, a, b in diffs)
                raise SettingsMismatch(
                    f"{self.root} was prepared with other settings:\n{lines}\n"
                    "Use another --out folder, or --overwrite to redo every clip with the new settings."
                )
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        info = DatasetInfo.from_settings(settings, created=now, updated=now)
        if existing is not None:
            info.created = existing.created or now
            info.default_protocol = existing.default_protocol
            info.protocols = dict(existing.protocols)
            if not info.corpus:
                info.corpus = existing.corpus
            if existing.legacy and existing.default_protocol:
                self._materialise_legacy_protocol(existing.default_protocol)
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_info(info)
        return info

    def _materialise_legacy_protocol(self, protocol: str) -> None:
        if self.protocol_path(protocol).exists():
            return
        parts = {r["clip_id"]: r.get("split") for r in self.rows() if r.get("split")}
        if parts:
            atomic.write_json(self.protocol_path(protocol), dict(sorted(parts.items())))

    def _write_info(self, info: DatasetInfo) -> None:
        atomic.write_json(self.info_path, info.to_dict())
        self._info = info

    # protocols -----------------------------------------------------------------------------------
    def protocol_parts(self, protocol: str) -> dict[str, str]:
        """``splits/<protocol>.json`` (clip id -> part; empty when there is none); a damaged one is a
        :class:`DamagedDataset`."""
        path = self.protocol_path(protocol)
        if not path.exists():
            return {}
        with _reading():
            return _read_split_file(path, protocol, self.root)

    def stored_protocols(self) -> list[str]:
        folder = self.root / SPLITS_DIR
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def add_protocol(self, protocol: str, parts: Mapping[str, str]) -> ProtocolChange:
        """Assign ``parts`` (clip id -> part) in ``protocol``; other protocols are left as they are.

        A protocol the store already holds keeps its other clips; a clip whose part changes is
        counted in ``moved`` (a protocol rule that changed, e.g. another seed).
        """
        if not protocol or "/" in protocol or protocol.startswith("."):
            raise ValueError(f"invalid protocol name {protocol!r}")
        info = self.read_info()
        if info is None:
            raise RuntimeError(f"{self.root}: claim() the dataset before adding a protocol")
        held = self.protocol_parts(protocol)
        added = protocol not in info.protocols and not held
        moved = sum(1 for c, p in parts.items() if c in held and held[c] != p)
        merged = {**held, **{str(c): str(p) for c, p in parts.items()}}
        if merged != held:
            atomic.write_json(self.protocol_path(protocol), dict(sorted(merged.items())))
        is_default = False
        if not info.default_protocol:
            info.default_protocol = protocol
            is_default = True
        info.protocols.setdefault(protocol, {})
        self._write_info(info)
        return ProtocolChange(protocol, added, len(parts), moved, is_default)

    # rows and manifest ---------------------------------------------------------------------------
    def is_done(self, clip_id: str) -> bool:
        return self.row_path(clip_id).exists()

    def write_row(self, row: dict[str, Any]) -> None:
        atomic.write_json(self.row_path(row["clip_id"]), row)

    def rows(self) -> list[dict[str, Any]]:
        with _reading():
            return read_rows(self.root)

    def write_manifest(self) -> pd.DataFrame:
        """Rebuild ``manifest.parquet`` from the rows and the protocol files (atomic); update the info's
        per-protocol counts. Column ``split`` is the default protocol's part."""
        rows = self.rows()
        info = self.read_info() if self.info_path.exists() else None
        protocols = self.stored_protocols()
        default = info.default_protocol if info is not None else None
        assignments = {p: self.protocol_parts(p) for p in protocols}
        for row in rows:
            for p, parts in assignments.items():
                row[split_column(p)] = parts.get(row["clip_id"])
            if default in assignments:
                row["split"] = assignments[default].get(row["clip_id"])
        df = rows_to_frame(rows)
        for p in protocols:  # a protocol column exists even when no row has a part in it yet
            if split_column(p) not in df.columns:
                df[split_column(p)] = None
        with atomic.atomic_path(self.manifest_path) as tmp:
            df.to_parquet(tmp, index=False)
        if info is not None and not info.legacy:
            for p in protocols:
                info.protocols[p] = protocol_counts(df, split_column(p))
            info.updated = time.strftime("%Y-%m-%dT%H:%M:%S")
            self._write_info(info)
        return df

    def read_manifest(self) -> pd.DataFrame:
        """The manifest frame (built from the rows when no manifest was written yet)."""
        with _reading():
            df = read_manifest_frame(self.root)
        return df if df is not None else rows_to_frame([])

    # clip data -----------------------------------------------------------------------------------
    def write_clip(self, clip_id: str, **arrays: Any) -> None:
        atomic.save_npz(self.clip_path(clip_id), **arrays)

    def load_clip(self, clip_id: str) -> dict[str, np.ndarray]:
        with _reading():
            return load_clip_file(self.clip_path(clip_id), clip_id, self.root)

    def remove_clip(self, clip_id: str) -> None:
        for p in (self.row_path(clip_id), self.clip_path(clip_id), self.crop_path(clip_id)):
            if p.exists():
                os.remove(p)

    def remove_temporary_files(self) -> int:
        """Delete temporary files a killed writer left (``.<name>.<random>.tmp<suffix>``); call only
        while holding the folder's writer lock. Returns how many were removed."""
        n = 0
        for sub in ("clips", "crops", "rows", SPLITS_DIR, "."):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for path in folder.glob(".*.tmp*"):
                if path.is_file():
                    path.unlink(missing_ok=True)
                    n += 1
        return n


DatasetWriter = DatasetStore


def diff_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Differing leaves of two nested settings dicts, ignoring the talkface version."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(old) | set(new)):
        if key in ("talkface_version", "created"):
            continue
        a, b = old.get(key), new.get(key)
        if a in (None, {}) and b in (None, {}):  # a setting added later, at its empty default
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_settings(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def words_array(words: list[tuple[float, float, str]]) -> np.ndarray:
    """Words as a structured array that ``np.load(allow_pickle=False)`` can read."""
    dtype = np.dtype([("start_s", "<f8"), ("end_s", "<f8"), ("word", "<U32")])
    return np.array([(float(s), float(e), str(w)) for s, e, w in words], dtype=dtype)


__all__ = [
    "LEGACY_PROTOCOL",
    "SETTINGS_FILE",
    "DamagedDataset",
    "DatasetStore",
    "DatasetWriter",
    "ProtocolChange",
    "SettingsMismatch",
    "diff_settings",
    "words_array",
]
