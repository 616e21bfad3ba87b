"""VoxCeleb1/2 face-track videos: ``<root>/idXXXXX/<youtube_id>/<n>.mp4``.

``root`` may be the folder of ``id*`` speakers, or the VoxCeleb2 release folder holding ``dev/mp4``
and ``test/mp4`` (the official speaker-disjoint split). Clip ids are ``id00012__21Uxsk56VDQ__00001``.

Splits: ``speaker-hash`` (default) hashes the speaker id, so no identity is in two splits (VoxCeleb's
own protocol is speaker-disjoint); ``official`` uses the release's dev/test folders (dev -> train);
``hash`` hashes the clip id (seen identities, like GRID's seen-speaker split).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from talkface.preprocess.corpora.base import (
    ClipSource,
    CorpusError,
    Discovery,
    HashSplitRecipe,
    HashSplitRule,
    natural_key,
    register_recipe,
)
from talkface.preprocess.corpora.videos import ID_SEPARATOR, find_videos

SPEAKER_RE = re.compile(r"^id\d{5}$")
OFFICIAL_PARTS = {"dev": "train", "test": "test"}
SPLITS = ("speaker-hash", "official", "hash")


def speaker_in_path(parts: Sequence[str]) -> str | None:
    """The VoxCeleb identity (``idXXXXX``) among folder names, the last one when several."""
    found = [p for p in parts if SPEAKER_RE.match(p)]
    return found[-1] if found else None


def _holds_speakers(folder: Path) -> bool:
    return any(SPEAKER_RE.match(p.name) for p in folder.iterdir() if p.is_dir())


def _speaker_roots(root: Path) -> list[tuple[Path, str | None]]:
    """(folder holding id* speakers, official split or None)."""
    if _holds_speakers(root):
        return [(root, None)]
    found = []
    for part, split in OFFICIAL_PARTS.items():
        for candidate in (root / part / "mp4", root / part):
            if candidate.is_dir() and _holds_speakers(candidate):
                found.append((candidate, split))
                break
    return found


@register_recipe("voxceleb")
class VoxCelebRecipe(HashSplitRecipe):
    """VoxCeleb1/2 mp4 face tracks, speaker-disjoint splits by default."""

    splits = SPLITS
    root_help = ("VoxCeleb root: <root>/id00012/<video>/00001.mp4, or the VoxCeleb2 release folder with "
                 "dev/mp4 and test/mp4.")

    def _discover(self, root: Path, split: str, rule: HashSplitRule) -> Discovery:
        speaker_roots = _speaker_roots(root)
        if not speaker_roots:
            raise CorpusError(
                f"voxceleb: no idXXXXX speaker folders under {root} (expected "
                "<root>/id00012/<video>/00001.mp4 or <root>/dev/mp4/id00012/...)"
            )
        if split == "official" and any(official is None for _, official in speaker_roots):
            raise CorpusError(f"voxceleb: split 'official' needs dev/ and test/ folders under {root}")

        clips: list[ClipSource] = []
        problems: list[str] = []
        for base, official in speaker_roots:
            for spk_dir in sorted(base.iterdir(), key=lambda p: natural_key(p.name)):
                if not spk_dir.is_dir():
                    continue
                if not SPEAKER_RE.match(spk_dir.name):
                    problems.append(f"{spk_dir}: not an idXXXXX speaker folder; skipped")
                    continue
                videos = find_videos(spk_dir)
                if not videos:
                    problems.append(f"{spk_dir.name}: speaker folder holds no videos")
                for video in videos:
                    rel = video.relative_to(spk_dir).with_suffix("")
                    if len(rel.parts) != 2:
                        problems.append(f"{video}: not <speaker>/<video_id>/<n>.mp4; skipped")
                        continue
                    clip_id = ID_SEPARATOR.join((spk_dir.name, *rel.parts))
                    if split == "official":
                        clip_split = official or "unassigned"
                    elif split == "speaker-hash":
                        clip_split = rule.assign(spk_dir.name)
                    else:
                        clip_split = rule.assign(clip_id)
                    clips.append(ClipSource(clip_id=clip_id, corpus="voxceleb", speaker=spk_dir.name,
                                            split=clip_split, source_video=video, protocol=split))
        if not clips:
            raise CorpusError(f"voxceleb: speaker folders under {root} hold no <video_id>/<n>.mp4 clips")
        return Discovery(clips=clips, problems=problems)
