"""Folders of video files: what the ``folder`` and ``voxceleb`` recipes share.

Clip ids are the path relative to a root without the suffix, separators replaced by ``__``
(``spk1/a/x.mp4`` -> ``spk1__a__x``), so ids are unique and readable.
"""

from __future__ import annotations

import os
from pathlib import Path

from talkface.prepare.corpora.base import natural_key

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm"})
ID_SEPARATOR = "__"


def clip_id_for(root: Path, video: Path) -> str:
    """``a/b/c.mp4`` under ``root`` -> ``a__b__c``."""
    rel = video.relative_to(root).with_suffix("")
    return ID_SEPARATOR.join(rel.parts)


def find_videos(root: Path) -> list[Path]:
    """Every video file under ``root``, hidden folders skipped, in natural order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fname in filenames:
            if not fname.startswith(".") and Path(fname).suffix.lower() in VIDEO_SUFFIXES:
                found.append(Path(dirpath) / fname)
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(root))))


def read_transcript(path: Path) -> str:
    """A sidecar transcript as one line of single-spaced text."""
    return " ".join(path.read_text(encoding="utf-8", errors="replace").split())
