"""The generated-videos contract: ``OUT/generation.json`` beside the ``<clip_id>.mp4`` files that
``generate --data`` and every ``baseline`` write.

The record says what made the videos: the method's definition, the identity-frame rule, the dataset,
protocol, part and seed, fps and crop size, the frame-count and audio rules, the video codec, and the
provenance of every checkpoint loaded (SHA-256s, blink calibration). ``complete`` is False while a run
writes and True at its end, with ``generated``, ``skipped_existing`` and ``failed`` (clip -> reason).
This module is its one reader and writer. A damaged record (truncated, empty, not a record) beside
videos is a :class:`GenerationRecordError`, one sentence naming it: without it nothing says which run
made those videos, so no run adds to them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from talkface.store.damage import read_json_object
from talkface.utils import atomic

GENERATION_JSON = "generation.json"


class GenerationRecordError(ValueError):
    """A ``generation.json`` that cannot be read, or another run's; ``str()`` is one sentence."""

#: The header fields whose change makes earlier videos in the folder another run's.
SAME_RUN_KEYS = ("method", "data", "protocol", "part", "seed", "crop_size", "identity_frame", "identity_from")


def record_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / GENERATION_JSON


def write_record(folder: str | os.PathLike, record: dict[str, Any]) -> None:
    atomic.write_json(record_path(folder), record)


def read_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's record; None when it has none or it cannot be read as JSON."""
    try:
        record = json.loads(record_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_record_strict(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's record; None when it has none; a :class:`GenerationRecordError` (the file, why,
    what to do) when it is there but damaged."""
    path = record_path(folder)
    if not path.exists():
        return None
    todo = (f"it no longer says which run made the videos in {Path(folder)}: write to another --out, or "
            "empty the folder to redo them")
    return read_json_object(path, GenerationRecordError, todo, "a generation record")


def is_complete(folder: str | os.PathLike, clip_ids: list[str]) -> bool:
    """A finished run with no failure that holds a video for each of ``clip_ids``."""
    record = read_record(folder)
    if record is None:
        return False
    return (bool(record.get("complete")) and not record.get("failed")
            and all((Path(folder) / f"{c}.mp4").is_file() for c in clip_ids))


#: generation rules recorded since they exist, (key, name, what a folder written before holds): a folder
#: written before holds videos made without them
RULES_RECORDED_SINCE = (
    ("blink_seed_rule", "blink seed rule", "one seed for every clip there, one per clip now"),
    ("retarget_mouth_scale", "retargeting rule", "none there"),
    ("blink_hold", "blink hold rule", "none there"),
)


def check_same_run(out_dir: Path, header: dict[str, Any]) -> None:
    """Refuse (:class:`GenerationRecordError`, a ``ValueError``) to add videos to a folder whose
    videos another run made: another method, dataset, protocol, part, seed, crop size, identity rule,
    composite, retargeting or blink-hold rule or checkpoints, each named with its value there and its
    value now; or whose record is damaged."""
    out_dir = Path(out_dir)
    if not record_path(out_dir).exists() or not any(out_dir.glob("*.mp4")):
        return
    old = read_record_strict(out_dir)
    if old is None:
        return
    diffs = [f"another {k} ({_short(old.get(k))} there, {_short(header.get(k))} now)"
             for k in SAME_RUN_KEYS if k in old and old.get(k) != header.get(k)]
    for key, what, before in RULES_RECORDED_SINCE:
        if header.get(key) and old.get(key) != header.get(key):
            diffs.append(f"another {what} ({before if old.get(key) is None else 'another there'})")
    if _composite_rule(old) != _composite_rule(header):
        diffs.append(f"another composite rule ({_short(old.get('composite'))} there, "
                     f"{_short(header.get('composite'))} now)")
    old_ck = _checkpoint_hashes(old)
    new_ck = _checkpoint_hashes(header)
    for stage in sorted(set(old_ck) | set(new_ck)):
        if old_ck.get(stage) != new_ck.get(stage):
            diffs.append(f"another {stage} checkpoint ({_sha(old_ck.get(stage))} there, "
                         f"{_sha(new_ck.get(stage))} now)")
    if diffs:
        raise GenerationRecordError(
            f"{out_dir} already holds videos made with {', '.join(diffs)}: write to another --out, or empty "
            "it to redo them")


def _composite_rule(record: dict[str, Any]) -> str | None:
    """The composite rule's text: ``composite_rule``, or in records written before rules had names, the
    text itself under ``composite`` (None: a method with no texture stage)."""
    return record.get("composite_rule") or record.get("composite")


def _checkpoint_hashes(record: dict[str, Any]) -> dict[str, str | None]:
    """Stage -> its checkpoint's SHA-256."""
    checkpoints = record.get("checkpoints") or {}
    if not isinstance(checkpoints, dict):
        return {}
    return {str(s): (str(c.get("sha256")) if isinstance(c, dict) and c.get("sha256") else None)
            for s, c in checkpoints.items()}


def _sha(value: str | None) -> str:
    """A SHA-256 as a message shows it: ``sha256 <first 12 digits>``; ``none`` for no checkpoint."""
    return f"sha256 {value[:12]}" if value else "none"


def _short(value: Any) -> str:
    """A value as a message shows it: repr, its middle cut beyond 60 characters (a path's end is what
    tells two apart); ``none`` for a missing one."""
    if value is None:
        return "none"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:24]}...{text[-33:]}"
