"""Where each method's videos come from: ``--method NAME=PATH``.

PATH is either a folder of generated videos named ``<clip_id>.mp4`` (the generation contract), or a
prepared dataset (a folder with ``manifest.parquet``), whose real crops ``crops/<clip_id>.mp4`` are
used for the clips the dataset reader calls usable (:func:`talkface.store.dataset.is_usable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class StudyError(ValueError):
    """A study cannot be exported or analysed as asked; the message says why and what to do."""


@dataclass
class MethodSource:
    name: str
    path: Path
    kind: str  # videos | dataset
    clips: dict[str, Path]  # clip id -> video file

    def to_key(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "clips_found": len(self.clips)}


def parse_method(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path), split by :func:`talkface.utils.names.split_name_path` (a name may
    hold spaces and ``=``, as ``evaluate --method`` allows) and checked by the names rule."""
    from talkface.utils.names import NameRefused, check_name, split_name_path

    try:
        name, path = split_name_path(spec, exists=lambda p: Path(p.strip()).expanduser().exists(),
                                     what="--method NAME=PATH")
        name = (name or "").strip()
        if not name or not path.strip():
            raise StudyError(f"--method takes NAME=PATH (e.g. ours=out/ours), not {spec!r}")
        check_name(name, "method name")
    except NameRefused as exc:
        raise StudyError(str(exc)) from None
    return name, Path(path.strip()).expanduser()


def open_method(name: str, path: Path) -> MethodSource:
    if not path.exists():
        raise StudyError(f"method {name!r}: {path} does not exist")
    if not path.is_dir():
        raise StudyError(f"method {name!r}: {path} is a file; give a folder of <clip_id>.mp4 videos or a "
                         "prepared dataset")
    if (path / "manifest.parquet").exists():
        return _dataset_source(name, path)
    clips = {p.stem: p for p in sorted(path.glob("*.mp4")) if p.is_file() and not p.name.startswith(".")}
    if not clips:
        raise StudyError(f"method {name!r}: {path} holds no <clip_id>.mp4 videos and is not a prepared "
                         "dataset (no manifest.parquet)")
    return MethodSource(name, path, "videos", clips)


def _dataset_source(name: str, path: Path) -> MethodSource:
    from talkface.store.dataset import Dataset, DatasetError, is_usable

    try:
        ds = Dataset.open(path)
    except DatasetError as exc:
        raise StudyError(f"method {name!r}: {exc}") from None
    clips = {}
    for record in ds.records():
        if is_usable(record):
            crop = ds.crop_path(record.clip_id)
            if crop.exists():
                clips[record.clip_id] = crop
    if not clips:
        raise StudyError(f"method {name!r}: the dataset {path} has no usable clip with a crop video")
    return MethodSource(name, path, "dataset", clips)


def common_clips(sources: list[MethodSource]) -> list[str]:
    """Clip ids present for every method, sorted; a clear error when there are none."""
    common = set(sources[0].clips)
    for s in sources[1:]:
        common &= set(s.clips)
    if not common:
        counts = ", ".join(f"{s.name}: {len(s.clips)}" for s in sources)
        raise StudyError(f"no clip id is present for every method ({counts}); name videos <clip_id>.mp4 "
                         "with the dataset's clip ids")
    return sorted(common)
