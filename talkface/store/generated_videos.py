"""The generated-videos contract: ``OUT/generation.json`` beside the ``<clip_id>.mp4`` files that
``generate --data`` and every ``baseline`` write.

The record says what made the videos: the method's definition, the identity-frame rule, the dataset,
protocol, part and seed, fps and crop size, the frame-count and audio rules, the video codec, and the
provenance of every checkpoint loaded (SHA-256s, blink calibration). ``complete`` is False while a run
writes and True at its end, with ``generated``, ``skipped_existing`` and ``failed`` (clip -> reason).
This module is its one reader and writer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from talkface.utils import atomic

GENERATION_JSON = "generation.json"
#: The header fields whose change makes earlier videos in the folder another run's.
SAME_RUN_KEYS = ("method", "data", "protocol", "part", "seed", "crop_size", "identity_frame", "identity_from")


def record_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / GENERATION_JSON


def write_record(folder: str | os.PathLike, record: dict[str, Any]) -> None:
    atomic.write_json(record_path(folder), record)


def read_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's record; None when it has none or it cannot be read as JSON."""
    try:
        return json.loads(record_path(folder).read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: str | os.PathLike, clip_ids: list[str]) -> bool:
    """A finished run with no failure that holds a video for each of ``clip_ids``."""
    record = read_record(folder)
    if record is None:
        return False
    return (bool(record.get("complete")) and not record.get("failed")
            and all((Path(folder) / f"{c}.mp4").is_file() for c in clip_ids))


def check_same_run(out_dir: Path, header: dict[str, Any]) -> None:
    """Refuse (``ValueError``) to add videos to a folder whose videos another run made: another method,
    dataset, protocol, part, seed, crop size, identity rule or checkpoints."""
    if not record_path(out_dir).exists() or not any(out_dir.glob("*.mp4")):
        return
    old = read_record(out_dir)
    if old is None:
        return
    diffs = [k for k in SAME_RUN_KEYS if k in old and old.get(k) != header.get(k)]
    old_ck = {s: c.get("sha256") for s, c in (old.get("checkpoints") or {}).items()}
    new_ck = {s: c.get("sha256") for s, c in (header.get("checkpoints") or {}).items()}
    if old_ck != new_ck:
        diffs.append("checkpoints")
    if diffs:
        raise ValueError(f"{out_dir} already holds videos made with another {', '.join(diffs)} "
                         f"({old.get('method')!r}): write to another --out, or empty it to redo them")
