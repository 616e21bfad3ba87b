"""The prepared dataset: the one reader of what ``talkface prepare`` writes.

Files in a dataset folder ``D``::

    D/talkface_dataset.json     DatasetInfo (corpus, protocols and their counts, crop size, fps,
                                backends with model SHA-256s, the full prepare settings, version)
    D/manifest.parquet          one ClipRecord per row; columns MANIFEST_COLUMNS + split_<protocol>
    D/clips/<id>.npz            landmarks, face_found, transform, landmarks_aligned, audio_features, words
    D/crops/<id>.mp4            aligned face crops with the clip's audio
    D/rows/<id>.json            each finished clip's record (the manifest is rebuilt from these)
    D/splits/<protocol>.json    clip id -> part (train/val/test) of one split protocol

Usage::

    from talkface.store import Dataset, DatasetError, is_usable

    ds = Dataset.open("prepared/grid")        # DatasetError (one sentence) if not a dataset
    ds.info.corpus, ds.crop_size, ds.fps     # "grid", 128, 25.0
    ds.protocols()                           # ["seen", "speaker-independent"]
    parts = ds.parts()                       # the default protocol; parts.protocol names it
    parts.train, parts.val, parts.test       # usable clip ids, sorted
    ds.parts("seen", val_fallback_seed=0)    # no 'val' clips -> a seeded 10% of train
    parts.require("train")                   # DatasetError naming what the protocol holds
    rec = ds.record("s1_bbaf2n")             # ClipRecord; rec.part("seen") -> "train"
    arrays = ds.load_clip("s1_bbaf2n")       # dict of numpy arrays from clips/<id>.npz
    ds.crop_path("s1_bbaf2n")                # crops/<id>.mp4

**The usable rule** (:func:`is_usable`): a clip is usable when its status is ``ok`` and it carries no
flag of :data:`UNUSABLE_FLAGS` (``silent_audio``: its speech features are not speech); training,
generation, baselines and evaluation all use exactly these clips. ``ok`` means a face (detected,
tracked or interpolated over a gap of at most a few frames) on every frame, audio covering the video,
and a video as long as its audio and alignment. ``partial`` clips (long no-face stretches, blank
frames, implausible landmark frames, a truncated video) and ``failed`` clips stay listed in the
manifest with their flags and reasons, but are used by nobody. Why ``ok`` only: evaluation compares
every frame of a generated clip with its reference and must not score a reference frame that shows no
face (a blank or truncated reference makes any method look better or worse by chance), generation
writes one frame per reference frame, and training would learn nothing from a masked frame that the
other two need; one rule for all three means a split's test clips are the same clips everywhere. On
the 127 GRID fixture clips it drops one clip (``s1_lgbf8n``, 12 blank frames).

**Protocols.** A split protocol (``seen``, ``speaker-independent``, ``hash``, ...) assigns each clip a
part (``train``/``val``/``test``). A store holds one or more: the protocol ``prepare`` was first run
with is the default (manifest column ``split``); every protocol has its column ``split_<protocol>``.
Re-running ``prepare`` with another ``--protocol`` adds a column and redoes no clip.

**Damage.** A file of the dataset that cannot be read (truncated, empty, not what it should be) is a
:class:`DatasetError`: one sentence naming the file and what to do (a clip's files are redone by
deleting its ``rows/<id>.json`` and running the same ``prepare`` again; the manifest is rebuilt from
``rows/`` by any ``prepare`` run), never a reader's traceback.

Datasets written before this module (a ``talkface_dataset.json`` holding only the prepare settings,
and a manifest with a single ``split`` column) still open: their info is derived from the settings
and the manifest (see :func:`_legacy_info`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from talkface.store.damage import damaged, read_json_object, read_parquet_table
from talkface.store.splits import CORPUS_PROTOCOLS, hash_fraction
from talkface.store.splits import recognise_protocol as recognise_committed

if TYPE_CHECKING:  # pandas is imported where a table is built: 0.25 s a worker process spared
    import pandas as pd

log = logging.getLogger("talkface.store.dataset")

INFO_FILE = "talkface_dataset.json"
MANIFEST_FILE = "manifest.parquet"
INFO_FORMAT = "talkface-dataset"
INFO_VERSION = 1
PARTS = ("train", "val", "test")
USABLE_STATUS = "ok"
#: Flags that make a clip unusable whatever its status: ``silent_audio`` (its speech features are of
#: silence; ``prepare`` also marks such a clip ``partial``, this keeps it out if a status says otherwise).
UNUSABLE_FLAGS = ("silent_audio",)
#: Share of the training clips moved to validation when a protocol has no 'val' clips.
VAL_FALLBACK_FRACTION = 0.1
#: Name given to the one protocol of an old dataset whose protocol cannot be recognised.
LEGACY_PROTOCOL = "default"

MANIFEST_COLUMNS = [
    "clip_id",
    "corpus",
    "speaker",
    "split",  # the part in the default protocol; every protocol also has split_<protocol>
    "source_video",
    "source_audio",
    "n_frames",
    "fps",
    "duration_s",
    "transcript",
    "status",  # ok | partial | failed
    "error",
    "flags",  # ';'-joined notes, e.g. no_alignment, audio_padded_ms=120, video_truncated=2.16/3.00s
    "face_ratio",
    "landmark_backend",
    "feature_backend",
    "feature_model_sha256",
    "crop_size",
    "talkface_version",
]


class DatasetError(ValueError):
    """A dataset that cannot be used as asked; ``str()`` is one sentence for the user."""


def split_column(protocol: str) -> str:
    """Manifest column of a protocol's parts: ``split_<protocol>`` (the name kept verbatim)."""
    return f"split_{protocol}"


# ---------------------------------------------------------------------------------------------
# Records


@dataclass
class BackendInfo:
    """A landmark or feature backend as a dataset records it."""

    name: str
    version: str | None = None
    dim: int | None = None
    model_sha256: dict[str, str] = field(default_factory=dict)  # model role -> SHA-256

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "dim": self.dim,
                "model_sha256": dict(self.model_sha256)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BackendInfo:
        return cls(name=str(d.get("name") or ""), version=d.get("version"), dim=d.get("dim"),
                   model_sha256=dict(d.get("model_sha256") or {}))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, name: str | None = None) -> BackendInfo:
        """From a backend's ``settings()`` dict: ``*_sha256`` keys are models, ``*_version`` the version."""
        settings = dict(settings or {})
        models = {}
        for key, value in settings.items():
            if key.endswith("_sha256") and value:
                role = key[: -len("_sha256")] or "model"
                models[role] = str(value)
        version = next((str(v) for k, v in settings.items() if k.endswith("_version") and v), None)
        dim = settings.get("dim")
        return cls(name=str(settings.get("backend") or name or ""), version=version,
                   dim=int(dim) if dim is not None else None, model_sha256=models)


def _fields_named_alike(source: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`DatasetInfo` fields that an info file and the prepare settings spell alike: corpus,
    crop size, fps and talkface version, typed."""
    crop = source.get("crop_size")
    fps = source.get("fps")
    return {
        "corpus": str(source.get("corpus") or ""),
        "crop_size": int(crop) if crop is not None else None,
        "fps": float(fps) if fps is not None else None,
        "talkface_version": source.get("talkface_version"),
    }


@dataclass
class DatasetInfo:
    """What a dataset is, written once by ``prepare`` (``talkface_dataset.json``).

    ``protocols``: protocol -> {part: number of usable clips}; ``default_protocol``: the one ``prepare``
    was first run with (manifest column ``split``). ``settings``: every prepare setting that changes a
    clip (checked when a run resumes). ``legacy``: derived from an older dataset's files (not stored).
    """

    corpus: str
    crop_size: int | None
    fps: float | None
    default_protocol: str | None
    protocols: dict[str, dict[str, int]] = field(default_factory=dict)
    landmark_backend: BackendInfo = field(default_factory=lambda: BackendInfo(""))
    feature_backend: BackendInfo = field(default_factory=lambda: BackendInfo(""))
    settings: dict[str, Any] = field(default_factory=dict)
    talkface_version: str | None = None
    created: str | None = None
    updated: str | None = None
    legacy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": INFO_FORMAT,
            "format_version": INFO_VERSION,
            "corpus": self.corpus,
            "crop_size": self.crop_size,
            "fps": self.fps,
            "default_protocol": self.default_protocol,
            "protocols": {p: dict(c) for p, c in self.protocols.items()},
            "landmark_backend": self.landmark_backend.to_dict(),
            "feature_backend": self.feature_backend.to_dict(),
            "settings": self.settings,
            "talkface_version": self.talkface_version,
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetInfo:
        if d.get("format") != INFO_FORMAT:
            raise DatasetError("not a talkface dataset info (no 'format': 'talkface-dataset' field)")
        version = int(d.get("format_version", 0))
        if version > INFO_VERSION:
            raise DatasetError(f"dataset info format {version} is newer than this talkface reads "
                               f"({INFO_VERSION}); update talkface")
        return cls(
            **_fields_named_alike(d),
            default_protocol=d.get("default_protocol"),
            protocols={str(p): {str(k): int(v) for k, v in c.items()} for p, c in
                       (d.get("protocols") or {}).items()},
            landmark_backend=BackendInfo.from_dict(d.get("landmark_backend") or {}),
            feature_backend=BackendInfo.from_dict(d.get("feature_backend") or {}),
            settings=dict(d.get("settings") or {}),
            created=d.get("created"),
            updated=d.get("updated"),
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **extra: Any) -> DatasetInfo:
        """Info for a new dataset from the prepare settings (``PrepareConfig`` + backend settings)."""
        settings = dict(settings)
        return cls(
            **_fields_named_alike(settings),
            default_protocol=None,
            landmark_backend=BackendInfo.from_settings(settings.get("landmark_options"),
                                                       settings.get("landmark_backend")),
            feature_backend=BackendInfo.from_settings(settings.get("feature_options"),
                                                      settings.get("feature_backend")),
            settings=settings,
            **extra,
        )


_RECORD_FIELDS = ("clip_id", "corpus", "speaker", "status", "error", "flags", "n_frames", "fps",
                  "duration_s", "transcript", "face_ratio", "source_video", "source_audio")


@dataclass
class ClipRecord:
    """One clip of a dataset (one manifest row). ``parts``: protocol -> part (train/val/test)."""

    clip_id: str
    corpus: str = ""
    speaker: str = ""
    status: str = "failed"
    error: str | None = None
    flags: list[str] = field(default_factory=list)
    n_frames: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    transcript: str = ""
    face_ratio: float | None = None
    source_video: str | None = None
    source_audio: str | None = None
    split: str | None = None  # part in the default protocol (manifest column ``split``)
    parts: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # other manifest columns (backend names, ...)

    @property
    def usable(self) -> bool:
        return is_usable(self)

    def part(self, protocol: str | None = None) -> str | None:
        """The clip's part in ``protocol`` (the default protocol's ``split`` when None)."""
        return self.split if protocol is None else self.parts.get(protocol)

    def flag(self, name: str) -> str | None:
        """The value of flag ``name`` (``"name=value"`` -> ``"value"``, a bare ``"name"`` -> ``""``)."""
        for f in self.flags:
            key, sep, value = f.partition("=")
            if key == name:
                return value if sep else ""
        return None

    def to_dict(self) -> dict[str, Any]:
        """A manifest row: MANIFEST_COLUMNS plus ``split_<protocol>`` columns; flags ';'-joined."""
        out: dict[str, Any] = dict(self.extra)
        for name in _RECORD_FIELDS:
            out[name] = getattr(self, name)
        out["flags"] = ";".join(self.flags)
        out["split"] = self.split
        for protocol, part in self.parts.items():
            out[split_column(protocol)] = part
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClipRecord:
        row = {k: _none_if_na(v) for k, v in d.items()}
        flags = row.get("flags") or ""
        flags_list = [f for f in flags.split(";") if f] if isinstance(flags, str) else list(flags)
        parts = {k[len("split_"):]: v for k, v in row.items() if k.startswith("split_") and v is not None}
        known = set(_RECORD_FIELDS) | {"split", "parts", "extra"}
        extra = {k: v for k, v in row.items() if k not in known and not k.startswith("split_")}
        n_frames = row.get("n_frames")
        return cls(
            clip_id=str(row["clip_id"]),
            corpus=str(row.get("corpus") or ""),
            speaker=str(row.get("speaker") or ""),
            status=str(row.get("status") or "failed"),
            error=row.get("error"),
            flags=flags_list,
            n_frames=int(n_frames) if n_frames is not None else None,
            fps=_float(row.get("fps")),
            duration_s=_float(row.get("duration_s")),
            transcript=str(row.get("transcript") or ""),
            face_ratio=_float(row.get("face_ratio")),
            source_video=row.get("source_video"),
            source_audio=row.get("source_audio"),
            split=row.get("split"),
            parts=parts,
            extra=extra,
        )


def is_usable(record: ClipRecord | Mapping[str, Any] | Any) -> bool:
    """The one usable rule: status ``ok`` and no flag of ``UNUSABLE_FLAGS`` (see the module docstring).

    Accepts a :class:`ClipRecord`, a manifest row dict, or a pandas row (anything with ``status``).
    """
    if isinstance(record, Mapping):
        status, flags = record.get("status"), record.get("flags")
    else:
        status, flags = getattr(record, "status", None), getattr(record, "flags", None)
    return status == USABLE_STATUS and not _has_unusable_flag(flags)


def _has_unusable_flag(flags: Any) -> bool:
    """Whether ``flags`` (a ';'-joined string or a list of ``name`` / ``name=value``) names one of
    ``UNUSABLE_FLAGS``."""
    if flags is None or (isinstance(flags, float) and np.isnan(flags)):
        return False
    names = flags.split(";") if isinstance(flags, str) else list(flags)
    return any(str(f).partition("=")[0] in UNUSABLE_FLAGS for f in names)


def usable_mask(manifest: pd.DataFrame) -> pd.Series:
    """:func:`is_usable` over a manifest frame, as a boolean Series."""
    usable = manifest["status"] == USABLE_STATUS
    if "flags" in manifest.columns:
        usable &= ~manifest["flags"].map(_has_unusable_flag).astype(bool)
    return usable


def _none_if_na(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------------------------------------
# Parts of a protocol


@dataclass
class Parts:
    """Usable clip ids per part of one protocol. ``val_from_train``: val was taken from train."""

    protocol: str
    train: list[str]
    val: list[str]
    test: list[str]
    val_from_train: bool = False
    root: str = ""

    def __getitem__(self, part: str) -> list[str]:
        if part not in PARTS:
            raise DatasetError(f"unknown part {part!r}; the parts are {', '.join(PARTS)}")
        return getattr(self, part)

    def get(self, part: str) -> list[str]:
        return self[part]

    def as_dict(self) -> dict[str, list[str]]:
        return {p: list(self[p]) for p in PARTS}

    def counts(self) -> dict[str, int]:
        return {p: len(self[p]) for p in PARTS}

    def require(self, *parts: str, flag: str | None = "--part") -> Parts:
        """Raise :class:`DatasetError` (one sentence) when any of ``parts`` has no usable clip: it says
        which parts have clips and, for a command that chooses its part with ``flag``, the flag to use
        (``flag=None``: a command that cannot choose, e.g. training, which needs 'train')."""
        for part in parts:
            if not self[part]:
                have = [p for p, n in self.counts().items() if n]
                held = ", ".join(f"{p} {len(self[p])}" for p in have) or "no usable clips"
                hint = ""
                if have and flag:
                    choices = " or ".join(f"`{flag} {p}`" for p in have)
                    hint = f": pass {choices}, or choose another --protocol"
                elif not have:
                    hint = ": choose another --protocol"
                raise DatasetError(
                    f"{self.root}: protocol {self.protocol!r} has no usable {part!r} clips "
                    f"(it holds: {held}){hint}"
                )
        return self


def hash_val_split(train: list[str], seed: int, fraction: float = VAL_FALLBACK_FRACTION
                   ) -> tuple[list[str], list[str]]:
    """(train, val): the ``fraction`` of ``train`` with the smallest seeded hash (at least one clip
    when there are two or more), by :func:`talkface.store.splits.hash_fraction`."""
    if len(train) < 2:
        return list(train), []
    ranked = sorted(train, key=lambda c: hash_fraction(c, seed))
    n_val = max(1, int(round(fraction * len(train))))
    val = set(ranked[:n_val])
    return [c for c in train if c not in val], sorted(val)


# ---------------------------------------------------------------------------------------------
# The reader


class Dataset:
    """A prepared dataset folder, read-only. Open with :meth:`Dataset.open`."""

    def __init__(self, root: str | os.PathLike, info: DatasetInfo, manifest: pd.DataFrame) -> None:
        self.root = Path(root)
        self.info = info
        self._manifest = manifest
        self._records: dict[str, ClipRecord] | None = None

    # opening --------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> Dataset:
        """Open ``path``; a :class:`DatasetError` says why when it is not a prepared dataset."""
        root = Path(path).expanduser()
        if not root.exists():
            raise DatasetError(
                f"{root} does not exist: prepare a corpus into it first with "
                f"`talkface prepare <corpus> <corpus folder> --out {root}`")
        if not root.is_dir():
            raise DatasetError(f"{root} is a file, not a prepared dataset folder")
        manifest = read_manifest_frame(root)
        info_path = root / INFO_FILE
        raw: dict[str, Any] | None = None
        if info_path.exists():
            todo = ("restore it from a copy, or prepare the corpus again into a new folder "
                    "(`talkface prepare <corpus> <corpus folder> --out <new folder>`)")
            raw = read_json_object(info_path, DatasetError, todo, "a dataset description")
        if manifest is None:
            raise DatasetError(_not_a_dataset(root))
        if isinstance(raw, dict) and raw.get("format") == INFO_FORMAT:
            info = DatasetInfo.from_dict(raw)
        else:
            info = _legacy_info(raw, manifest)
        manifest = _with_protocol_columns(manifest, info, root)
        return cls(root, info, manifest)

    # info -----------------------------------------------------------------------------------------
    @property
    def crop_size(self) -> int:
        """Aligned crop size in pixels, as prepared (the only place it is read back)."""
        if self.info.crop_size is None:
            raise DatasetError(f"{self.root}: the dataset records no crop size (re-run `talkface prepare`)")
        return int(self.info.crop_size)

    @property
    def fps(self) -> float:
        if self.info.fps is None:
            raise DatasetError(f"{self.root}: the dataset records no frame rate (re-run `talkface prepare`)")
        return float(self.info.fps)

    @property
    def corpus(self) -> str:
        return self.info.corpus

    @property
    def default_protocol(self) -> str:
        if not self.info.default_protocol:
            raise DatasetError(f"{self.root}: the dataset holds no split protocol")
        return self.info.default_protocol

    def protocols(self) -> list[str]:
        """Protocols this store holds, the default first."""
        names = list(self.info.protocols)
        default = self.info.default_protocol
        if default in names:
            names.remove(default)
            names.insert(0, default)
        return names

    def check_protocol(self, protocol: str | None) -> str:
        """``protocol`` (default: the store's own) if the store holds it, else a :class:`DatasetError`."""
        if protocol is None:
            return self.default_protocol
        if protocol not in self.info.protocols:
            held = ", ".join(self.protocols()) or "none"
            raise DatasetError(f"{self.root} holds no split protocol {protocol!r} (it holds: {held})"
                               f"{self._protocol_hint(protocol)}")
        return protocol

    def _protocol_hint(self, protocol: str) -> str:
        offered = CORPUS_PROTOCOLS.get(self.corpus)
        if offered is None:
            return ""
        if protocol in offered:
            return (f"; add it with `talkface prepare {self.corpus} <corpus folder> --protocol {protocol} "
                    f"--out {self.root}`")
        return f"; the {self.corpus} recipe offers: {', '.join(offered)}"

    # records --------------------------------------------------------------------------------------
    def manifest(self) -> pd.DataFrame:
        """The manifest as a DataFrame (a copy), with a ``split_<protocol>`` column per protocol."""
        return self._manifest.copy()

    def records(self, usable_only: bool = False) -> list[ClipRecord]:
        recs = list(self._record_map().values())
        return [r for r in recs if r.usable] if usable_only else recs

    def record(self, clip_id: str) -> ClipRecord:
        try:
            return self._record_map()[clip_id]
        except KeyError:
            raise DatasetError(f"clip {clip_id!r} is not in {self.root / MANIFEST_FILE}") from None

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._record_map()

    def __len__(self) -> int:
        return len(self._manifest)

    def _record_map(self) -> dict[str, ClipRecord]:
        if self._records is None:
            self._records = {str(r["clip_id"]): ClipRecord.from_dict(r)
                             for r in self._manifest.to_dict(orient="records")}
        return self._records

    def usable_ids(self) -> list[str]:
        return sorted(self._manifest.loc[usable_mask(self._manifest), "clip_id"].astype(str))

    # parts ----------------------------------------------------------------------------------------
    def parts(self, protocol: str | None = None, *, val_fallback_seed: int | None = None,
              val_fallback_fraction: float = VAL_FALLBACK_FRACTION) -> Parts:
        """Usable clip ids of ``protocol`` (default: the store's own) per part, sorted.

        With ``val_fallback_seed``, a protocol with no usable 'val' clips gets a seeded hash split of
        its training clips (``val_fallback_fraction``, at least one clip), logged, so validation
        always has data; ``Parts.val_from_train`` says so. Empty parts are returned as empty lists:
        call :meth:`Parts.require` for the parts a command needs.
        """
        protocol = self.check_protocol(protocol)
        df = self._manifest[usable_mask(self._manifest)]
        col = split_column(protocol)
        found = {p: sorted(df.loc[df[col] == p, "clip_id"].astype(str)) for p in PARTS}
        parts = Parts(protocol=protocol, root=str(self.root), **found)
        if val_fallback_seed is not None and not parts.val and parts.train:
            parts.train, parts.val = hash_val_split(parts.train, val_fallback_seed, val_fallback_fraction)
            parts.val_from_train = bool(parts.val)
            log.warning("%s has no 'val' clips in protocol %r: using a seeded hash split (seed %d) of the "
                        "training clips, %d for validation, %d for training", self.root, protocol,
                        val_fallback_seed, len(parts.val), len(parts.train))
        return parts

    # files ----------------------------------------------------------------------------------------
    def clip_path(self, clip_id: str) -> Path:
        return self.root / "clips" / f"{clip_id}.npz"

    def crop_path(self, clip_id: str) -> Path:
        return self.root / "crops" / f"{clip_id}.mp4"

    def load_clip(self, clip_id: str) -> dict[str, np.ndarray]:
        """The arrays of ``clips/<id>.npz`` (FileNotFoundError when the clip has none, e.g. failed)."""
        return load_clip_file(self.clip_path(clip_id), clip_id, self.root)


def load_clip_file(path: Path, clip_id: str, root: Path) -> dict[str, np.ndarray]:
    """The arrays of a clip's ``.npz``; FileNotFoundError when it has none, a :class:`DatasetError`
    naming the file when it is damaged."""
    if not path.exists():
        raise FileNotFoundError(f"no prepared data for clip {clip_id!r} in {root}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001  (zipfile, zlib, numpy and EOF errors for a damaged file)
        raise _damaged(path, exc, _redo_clip(root, clip_id)) from None


def _redo_clip(root: Path, clip_id: str) -> str:
    return (f"delete {Path(root) / 'rows' / f'{clip_id}.json'} and run the same `talkface prepare ... "
            f"--out {root}` again to redo the clip")


def _damaged(path: Path, exc: BaseException, todo: str) -> DatasetError:
    """The one sentence for a dataset file that cannot be read: the file, why, and ``todo``."""
    return damaged(DatasetError, path, exc, todo)


#: Suffixes of the media files a corpus folder holds (a folder of them is not a prepared dataset).
MEDIA_SUFFIXES = frozenset({".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm", ".wav", ".flac",
                            ".m4a", ".mp3"})


def _holds_media(root: Path, max_depth: int = 3, max_entries: int = 5000) -> bool:
    """Whether ``root`` holds a media file within ``max_depth`` folders (looking at no more than
    ``max_entries`` entries)."""
    seen = 0
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= max_depth:
            dirs[:] = []
        if any(Path(f).suffix.lower() in MEDIA_SUFFIXES for f in files):
            return True
        seen += len(files) + len(dirs)
        if seen > max_entries:
            return False
    return False


def _not_a_dataset(root: Path) -> str:
    """Why an existing folder with no manifest and no finished clip is not a prepared dataset, and the
    command that makes one: a corpus folder is prepared into a new folder, never into itself."""
    parent = root.resolve().parent
    if (parent / MANIFEST_FILE).is_file() or (parent / INFO_FILE).is_file():
        return f"{root} is a folder inside the prepared dataset {parent}: pass {parent}"
    if (root / INFO_FILE).is_file():
        return (f"{root} is a dataset that `talkface prepare` has not finished a clip of (no "
                f"{MANIFEST_FILE}, nothing in rows/): run the same `talkface prepare ... --out {root}` again "
                "to finish it")
    if _holds_media(root):
        return (f"{root} holds videos or audio but is not a prepared dataset: prepare it first with "
                f"`talkface prepare <corpus> {root} --out <a new folder>` and pass that folder")
    return (f"{root} is not a prepared dataset (no {MANIFEST_FILE} and no finished clips): prepare a "
            f"corpus into it with `talkface prepare <corpus> <corpus folder> --out {root}`")


# ---------------------------------------------------------------------------------------------
# Manifest frames (shared by the reader and the writer)


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts) -> the manifest frame: MANIFEST_COLUMNS first, then any ``split_*`` columns."""
    extra = sorted({k for r in rows for k in r if k.startswith("split_")})
    import pandas as pd

    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + extra)
    df["n_frames"] = df["n_frames"].astype("Int64")
    for col in ("fps", "duration_s", "face_ratio"):
        df[col] = df[col].astype("float64")
    return df.sort_values("clip_id").reset_index(drop=True)


def read_rows(root: Path) -> list[dict[str, Any]]:
    """Every finished clip's record (``rows/<id>.json``); a damaged one is a :class:`DatasetError`."""
    folder = Path(root) / "rows"
    if not folder.exists():
        return []
    rows = []
    for path in sorted(folder.glob("*.json")):
        todo = f"delete it and run the same `talkface prepare ... --out {root}` again to redo the clip"
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _damaged(path, exc, todo) from None
        if not isinstance(row, dict) or "clip_id" not in row:
            raise DatasetError(f"{path} is damaged (not a clip record): {todo}")
        rows.append(row)
    return rows


def read_manifest_frame(root: Path) -> pd.DataFrame | None:
    """``manifest.parquet``, else a frame built from ``rows/`` (a run that never finished), else None."""
    path = Path(root) / MANIFEST_FILE
    if path.exists():
        todo = (f"delete it and run the same `talkface prepare ... --out {root}` again (it rebuilds the "
                "manifest from rows/ without redoing finished clips)")
        return read_parquet_table(path, DatasetError, todo, "a dataset manifest", ("clip_id", "status"))
    rows = read_rows(root)
    return rows_to_frame(rows) if rows else None


def _with_protocol_columns(manifest: pd.DataFrame, info: DatasetInfo, root: Path) -> pd.DataFrame:
    """Every protocol of ``info`` as a ``split_<protocol>`` column: an old dataset's default protocol
    from ``split``; a protocol added by a run stopped before its manifest was rebuilt from
    ``splits/<protocol>.json``."""
    df = manifest
    default = info.default_protocol
    if default and split_column(default) not in df.columns and "split" in df.columns and info.legacy:
        df = df.assign(**{split_column(default): df["split"]})
    for protocol in info.protocols:
        col = split_column(protocol)
        if col in df.columns:
            continue
        path = Path(root) / "splits" / f"{protocol}.json"
        parts = _read_split_file(path, protocol, root) if path.exists() else {}
        df = df.assign(**{col: [parts.get(c) for c in df["clip_id"].astype(str)]})
    return df


def _read_split_file(path: Path, protocol: str, root: Path) -> dict[str, Any]:
    """``splits/<protocol>.json`` (clip id -> part); a damaged one is a :class:`DatasetError`."""
    todo = (f"delete it and run `talkface prepare <corpus> <corpus folder> --protocol {protocol} "
            f"--out {root}` to write it again")
    return read_json_object(path, DatasetError, todo, "a clip -> part mapping")


def _legacy_info(settings: dict[str, Any] | None, manifest: pd.DataFrame) -> DatasetInfo:
    """Info of a dataset written before DatasetInfo: from its settings file and its manifest."""
    settings = dict(settings or {})

    def one(column: str) -> Any:
        if column not in manifest.columns:
            return None
        values = manifest[column].dropna().unique()
        return values[0] if len(values) == 1 else None

    crop = settings.get("crop_size", one("crop_size"))
    fps = settings.get("fps", one("fps"))
    corpus = settings.get("corpus") or one("corpus") or ""
    protocol = recognise_protocol(str(corpus), manifest) or LEGACY_PROTOCOL
    info = DatasetInfo.from_settings({**settings, "crop_size": crop, "fps": fps, "corpus": corpus})
    if "landmark_backend" not in settings and one("landmark_backend"):
        info.landmark_backend = BackendInfo(name=str(one("landmark_backend")))
    if "feature_backend" not in settings and one("feature_backend"):
        info.feature_backend = BackendInfo(name=str(one("feature_backend")),
                                           model_sha256={"model": str(one("feature_model_sha256"))}
                                           if one("feature_model_sha256") else {})
    info.default_protocol = protocol
    info.protocols = {protocol: protocol_counts(manifest, "split")}
    info.talkface_version = settings.get("talkface_version") or one("talkface_version")
    info.legacy = True
    return info


def protocol_counts(manifest: pd.DataFrame, column: str) -> dict[str, int]:
    """Usable clips per part in ``column`` (train/val/test always present, others when non-zero)."""
    if column not in manifest.columns:
        return {p: 0 for p in PARTS}
    values = manifest.loc[usable_mask(manifest), column].dropna().astype(str)
    counts = {p: int((values == p).sum()) for p in PARTS}
    for other, n in values[~values.isin(PARTS)].value_counts().items():
        counts[str(other)] = int(n)
    return counts


def recognise_protocol(corpus: str, manifest: pd.DataFrame) -> str | None:
    """The protocol an old manifest's ``split`` column follows, when its corpus's committed split rules
    can tell (:func:`talkface.store.splits.recognise_protocol`)."""
    if "split" not in manifest.columns or manifest.empty or not corpus:
        return None
    rows = manifest[["clip_id", "speaker", "split"]].dropna()
    return recognise_committed(corpus, list(zip(rows.clip_id.astype(str), rows.speaker.astype(str),
                                                 rows.split.astype(str), strict=True)))


__all__ = [
    "BackendInfo",
    "ClipRecord",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "INFO_FILE",
    "MANIFEST_COLUMNS",
    "MANIFEST_FILE",
    "PARTS",
    "Parts",
    "VAL_FALLBACK_FRACTION",
    "hash_val_split",
    "is_usable",
    "protocol_counts",
    "rows_to_frame",
    "split_column",
    "usable_mask",
]
