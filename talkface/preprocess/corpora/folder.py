"""Any folder of talking-face videos: the recipe for data that follows no published layout.

Every video under ``root`` (recursively) is a clip. Its id is the path relative to ``root`` without
the suffix, separators replaced by ``__`` (``spk1/a/x.mp4`` -> ``spk1__a__x``), so ids are unique and
readable. The speaker is the first folder level (``unknown`` for videos directly in ``root``). A
sidecar ``<name>.wav`` replaces the video's audio track; a sidecar ``<name>.txt`` is the transcript.
Splits come from a seeded hash of the clip id, so adding videos never moves existing ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from talkface.preprocess.corpora.base import (
    ClipSource,
    CorpusError,
    CorpusRecipe,
    Discovery,
    HashSplitRule,
    check_root,
    natural_key,
    register_recipe,
    rule_from_fractions,
)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm"})
ID_SEPARATOR = "__"


def clip_id_for(root: Path, video: Path) -> str:
    """``a/b/c.mp4`` under ``root`` -> ``a__b__c``."""
    rel = video.relative_to(root).with_suffix("")
    return ID_SEPARATOR.join(rel.parts)


def speaker_for(root: Path, video: Path) -> str:
    parts = video.relative_to(root).parts
    return parts[0] if len(parts) > 1 else "unknown"


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


@register_recipe("folder")
class FolderRecipe(CorpusRecipe):
    """Any folder of videos (mp4, avi, mov, mkv, mpg, webm), recursively, split by a seeded hash."""

    splits = ("hash",)

    def discover(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        seed: int = 0,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        corpus: str = "folder",
        **opts: Any,
    ) -> Discovery:
        """List every video under ``root``; ``fractions`` are (train, val, test) of the hash split."""
        if opts:
            raise CorpusError(f"folder: unknown options {sorted(opts)}")
        self._check_split(split)
        rule = rule_from_fractions(fractions, seed)
        root = check_root(root, corpus)
        videos = find_videos(root)
        if not videos:
            raise CorpusError(
                f"{corpus}: no videos under {root} (looked for {', '.join(sorted(VIDEO_SUFFIXES))}, "
                "recursively)"
            )
        return self._discover_videos(root, videos, rule, corpus)

    def _discover_videos(self, root: Path, videos: list[Path], rule: HashSplitRule, corpus: str) -> Discovery:
        problems: list[str] = []
        clips: list[ClipSource] = []
        seen: dict[str, Path] = {}
        for video in videos:
            clip_id = clip_id_for(root, video)
            if clip_id in seen:  # same stem, two containers: x.mp4 and x.avi
                problems.append(f"{video}: same clip id {clip_id!r} as {seen[clip_id]}; skipped")
                continue
            seen[clip_id] = video
            wav = video.with_suffix(".wav")
            txt = video.with_suffix(".txt")
            clips.append(
                ClipSource(
                    clip_id=clip_id,
                    corpus=corpus,
                    speaker=speaker_for(root, video),
                    split=rule.assign(clip_id),
                    source_video=video,
                    source_audio=wav if wav.is_file() else None,
                    transcript=read_transcript(txt) if txt.is_file() else "",
                )
            )
        holding = {parent for v in seen.values() for parent in v.parents}
        for dirpath, dirnames, _ in os.walk(root, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            folder = Path(dirpath)
            if folder != root and folder not in holding:
                problems.append(f"{folder.relative_to(root)}: folder holds no videos")
                dirnames[:] = []
        return Discovery(clips=clips, problems=problems)

