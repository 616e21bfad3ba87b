"""VoxCeleb1/2 face-track videos: ``<root>/idXXXXX/<youtube_id>/<n>.mp4``.

``root`` may be the folder of ``id*`` speakers, or a release folder holding ``dev/mp4`` and
``test/mp4`` (VoxCeleb2's layout; ``dev/`` and ``test/`` directly holding ``id*`` folders works too).
Clip ids are ``id00012__21Uxsk56VDQ__00001``; the speaker is the identity ``id00012``.

Splits, all speaker-disjoint except ``hash``:

- ``official`` (default): the official test identities (``data_manifests/voxceleb``: VoxCeleb1's 40
  and VoxCeleb2's 118; VoxCeleb1 ids are ``id1xxxx`` and VoxCeleb2 ids ``id0xxxx``, so one set serves
  both) are ``test``; every other identity is ``train``, or ``val`` for a seeded hash share of the
  identities (``val / (train + val)`` of the ``--fractions``; the release has no validation set). Where
  the tree has ``dev/`` and ``test/`` folders they decide ``test``, and every identity whose folder
  disagrees with the list is reported.
- ``speaker-hash``: the identity is hashed into train / val / test (ignores the official list).
- ``hash``: the clip id is hashed (seen identities, like GRID's seen-speaker split).

Audio: VoxCeleb2's own audio is released as ``.m4a`` files (``aac/`` beside ``mp4/``, same
``idXXXXX/<video>/<n>`` names; VoxCeleb1's as ``wav/``). A clip's audio is the ``.m4a`` (or ``.wav``)
beside its ``.mp4`` where there is one, else the file at the same place under the parallel ``aac/`` or
``wav/`` tree, else the video's own track. Clips with a separate audio file carry the flag
``audio=<suffix>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from talkface.prepare.corpora.base import (
    ClipSource,
    CorpusError,
    Discovery,
    HashSplitRecipe,
    HashSplitRule,
    data_manifests_dir,
    hash_fraction,
    natural_key,
    register_recipe,
)
from talkface.prepare.corpora.videos import ID_SEPARATOR, find_videos
from talkface.store.splits import CORPUS_PROTOCOLS

SPEAKER_RE = re.compile(r"^id\d{5}$")
OFFICIAL_PARTS = {"dev": "train", "test": "test"}
SPLITS = CORPUS_PROTOCOLS["voxceleb"]
AUDIO_SUFFIXES = (".m4a", ".wav")
#: the parallel audio trees of the releases, tried in this order (``<part>/mp4`` -> ``<part>/aac``)
AUDIO_TREES = {".m4a": "aac", ".wav": "wav"}
TEST_LISTS = ("vox1_test_identities.txt", "vox2_test_identities.txt")


def speaker_in_path(parts: Sequence[str]) -> str | None:
    """The VoxCeleb identity (``idXXXXX``) among folder names, the last one when several."""
    found = [p for p in parts if SPEAKER_RE.match(p)]
    return found[-1] if found else None


@lru_cache(maxsize=4)
def _load_test_identities(folder: Path) -> frozenset[str]:
    ids: list[str] = []
    for name in TEST_LISTS:
        path = folder / name
        if not path.is_file():
            raise CorpusError(f"voxceleb: the official test identity list {path} is missing")
        listed = path.read_text().split()
        bad = [i for i in listed if not SPEAKER_RE.match(i)]
        if bad:
            raise CorpusError(f"voxceleb: {path} holds entries that are not idXXXXX ids: {bad[:3]}")
        ids.extend(listed)
    return frozenset(ids)


def load_test_identities() -> frozenset[str]:
    """The official VoxCeleb1 + VoxCeleb2 test identities (158 ids) from ``data_manifests/voxceleb``."""
    return _load_test_identities(data_manifests_dir() / "voxceleb")


def _holds_speakers(folder: Path) -> bool:
    return any(SPEAKER_RE.match(p.name) for p in folder.iterdir() if p.is_dir())


def _speaker_roots(root: Path) -> list[tuple[Path, str | None]]:
    """(folder holding id* speakers, official part from the folder name or None)."""
    if _holds_speakers(root):
        return [(root, None)]
    found = []
    for part, split in OFFICIAL_PARTS.items():
        for candidate in (root / part / "mp4", root / part):
            if candidate.is_dir() and _holds_speakers(candidate):
                found.append((candidate, split))
                break
    return found


def _audio_for(video: Path, base: Path) -> Path | None:
    """The separate audio file of ``video`` (under speaker folder root ``base``), if the corpus has one."""
    for suffix in AUDIO_SUFFIXES:
        beside = video.with_suffix(suffix)
        if beside.is_file():
            return beside
    if base.name == "mp4":  # <part>/mp4/idX/vid/n.mp4 -> <part>/aac/idX/vid/n.m4a
        rel = video.relative_to(base)
        for suffix, tree in AUDIO_TREES.items():
            candidate = (base.parent / tree / rel).with_suffix(suffix)
            if candidate.is_file():
                return candidate
    return None


def official_part(speaker: str, test_ids: frozenset[str], rule: HashSplitRule) -> str:
    """``test`` for an official test identity; else ``train``/``val`` by a seeded hash of the identity."""
    if speaker in test_ids:
        return "test"
    fr = rule.fractions()
    train, val = fr.get("train", 1.0), fr.get("val", 0.0)
    if val <= 0:
        return "train"
    return "train" if hash_fraction(speaker, rule.seed) < train / (train + val) else "val"


@register_recipe("voxceleb")
class VoxCelebRecipe(HashSplitRecipe):
    """VoxCeleb1/2 mp4 face tracks: official test identities, speaker-disjoint splits."""

    splits = SPLITS
    root_help = ("VoxCeleb root: <root>/id00012/<video>/00001.mp4, or the VoxCeleb2 release folder with "
                 "dev/mp4 and test/mp4 (and dev/aac, test/aac for the .m4a audio).")
    #: in-the-wild frames may show several faces: track the largest (the speaker the crop centres on)
    face_selection = "largest"

    def _discover(self, root: Path, split: str, rule: HashSplitRule) -> Discovery:
        speaker_roots = _speaker_roots(root)
        if not speaker_roots:
            raise CorpusError(
                f"voxceleb: no idXXXXX speaker folders under {root} (expected "
                "<root>/id00012/<video>/00001.mp4 or <root>/dev/mp4/id00012/...)"
            )
        test_ids = load_test_identities() if split == "official" else frozenset()

        clips: list[ClipSource] = []
        problems: list[str] = []
        disagree: dict[str, list[str]] = {"listed test identities under dev/": [],
                                          "unlisted identities under test/": []}
        seen_speakers: dict[str, str] = {}
        for base, folder_part in speaker_roots:
            for spk_dir in sorted(base.iterdir(), key=lambda p: natural_key(p.name)):
                if not spk_dir.is_dir():
                    continue
                speaker = spk_dir.name
                if not SPEAKER_RE.match(speaker):
                    problems.append(f"{spk_dir}: not an idXXXXX speaker folder; skipped")
                    continue
                if speaker in seen_speakers and seen_speakers[speaker] != str(folder_part):
                    problems.append(f"{speaker}: under both dev/ and test/")
                seen_speakers[speaker] = str(folder_part)
                videos = find_videos(spk_dir)
                if not videos:
                    problems.append(f"{speaker}: speaker folder holds no videos")
                if split == "official" and folder_part is not None:
                    if folder_part == "train" and speaker in test_ids:
                        disagree["listed test identities under dev/"].append(speaker)
                    elif folder_part == "test" and speaker not in test_ids:
                        disagree["unlisted identities under test/"].append(speaker)
                for video in videos:
                    rel = video.relative_to(spk_dir).with_suffix("")
                    if len(rel.parts) != 2:
                        problems.append(f"{video}: not <speaker>/<video_id>/<n>.mp4; skipped")
                        continue
                    clip_id = ID_SEPARATOR.join((speaker, *rel.parts))
                    if split == "official":
                        if folder_part == "test":
                            clip_split = "test"
                        elif folder_part == "train":
                            clip_split = official_part(speaker, frozenset(), rule)
                        else:
                            clip_split = official_part(speaker, test_ids, rule)
                    elif split == "speaker-hash":
                        clip_split = rule.assign(speaker)
                    else:
                        clip_split = rule.assign(clip_id)
                    audio = _audio_for(video, base)
                    flags = [f"audio={audio.suffix.lstrip('.')}"] if audio is not None else []
                    clips.append(ClipSource(clip_id=clip_id, corpus="voxceleb", speaker=speaker,
                                            split=clip_split, source_video=video, source_audio=audio,
                                            flags=flags, protocol=split))
        for what, speakers in disagree.items():
            if speakers:
                problems.append(f"official split: {len(speakers)} {what} (the folders decide): "
                                f"{', '.join(sorted(speakers, key=natural_key)[:10])}"
                                + (" ..." if len(speakers) > 10 else ""))
        if not clips:
            raise CorpusError(f"voxceleb: speaker folders under {root} hold no <video_id>/<n>.mp4 clips")
        return Discovery(clips=clips, problems=problems)
