"""Any folder of talking-face videos: the recipe for data that follows no published layout.

Every video under ``root`` (recursively) is a clip. Its id is the path relative to ``root`` without
the suffix, separators replaced by ``__`` (``spk1/a/x.mp4`` -> ``spk1__a__x``), so ids are unique and
readable. The speaker is the first folder level (``unknown`` for videos directly in ``root``), except
where a folder level is a VoxCeleb identity (``id00012``): a VoxCeleb tree given to this recipe
(``dev/mp4/id00012/<video>/00001.mp4``) gets its identities as speakers, not ``dev``. A sidecar
``<name>.wav`` replaces the video's audio track; a sidecar ``<name>.txt`` is the transcript. Splits
come from a seeded hash of the clip id, so adding videos never moves existing ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from talkface.prepare.corpora.base import (
    ClipSource,
    CorpusError,
    Discovery,
    HashSplitRecipe,
    HashSplitRule,
    register_recipe,
)
from talkface.prepare.corpora.videos import (  # noqa: F401  (re-exported: the names lived here)
    ID_SEPARATOR,
    VIDEO_SUFFIXES,
    clip_id_for,
    find_videos,
    read_transcript,
)
from talkface.prepare.corpora.voxceleb import speaker_in_path
from talkface.store.splits import CORPUS_PROTOCOLS


def speaker_for(root: Path, video: Path) -> str:
    """The VoxCeleb identity folder on the path if there is one, else the first folder level."""
    parts = video.relative_to(root).parts[:-1]
    return speaker_in_path(parts) or (parts[0] if parts else "unknown")


@register_recipe("folder")
class FolderRecipe(HashSplitRecipe):
    """Any folder of videos (mp4, avi, mov, mkv, mpg, webm), recursively, split by a seeded hash."""

    splits = CORPUS_PROTOCOLS["folder"]
    root_help = ("A folder of talking-face videos (searched recursively); the first folder level (or a "
                 "VoxCeleb idXXXXX level) is the speaker.")

    def _discover(self, root: Path, protocol: str, rule: HashSplitRule) -> Discovery:
        videos = find_videos(root)
        if not videos:
            raise CorpusError(
                f"folder: no videos under {root} (looked for {', '.join(sorted(VIDEO_SUFFIXES))}, "
                "recursively)"
            )
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
                    corpus=self.name,
                    speaker=speaker_for(root, video),
                    split=rule.assign(clip_id),
                    source_video=video,
                    source_audio=wav if wav.is_file() else None,
                    transcript=read_transcript(txt) if txt.is_file() else "",
                    protocol=protocol,
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
