"""GRID audio-visual sentence corpus (Cooke et al., JASA 2006): 34 speakers x 1,000 sentences.

Two layouts are accepted, detected per speaker:

* Zenodo (record 3625687): ``<root>/s1/*.mpg``, ``<root>/alignments/s1/*.align``, optional
  ``<root>/audio_25k/s1/*.wav``. Several speakers' alignment folders are swapped in this release; the
  committed ``data_manifests/grid/zenodo_alignment_swaps.csv`` says which folder holds whose words.
* Original site: ``<root>/s1/video/mpg_6000/*.mpg`` and ``<root>/s1/align/*.align`` (no swaps).

Every GRID file name encodes its sentence (``bbaf2n`` = "bin blue at f two now"), so each alignment
can be checked against its own video's name, and a speaker whose alignment folder belongs to someone
else is noticed (different speakers read different sentences, so almost no names match).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkface.prepare.corpora.base import (
    ClipSource,
    CommittedParts,
    CommittedSplitRecipe,
    CorpusError,
    Discovery,
    RecipeOption,
    Word,
    check_root,
    data_manifests_dir,
    natural_key,
    register_recipe,
)

# The sentence grammar: command colour preposition letter digit adverb, one file-name character each.
COMMANDS = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
COLOURS = {"b": "blue", "g": "green", "r": "red", "w": "white"}
PREPOSITIONS = {"a": "at", "b": "by", "i": "in", "w": "with"}
LETTERS = {c: c for c in "abcdefghijklmnopqrstuvxyz"}  # 25 letters: GRID has no "w"
DIGITS = {"z": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
          "7": "seven", "8": "eight", "9": "nine"}
ADVERBS = {"a": "again", "n": "now", "p": "please", "s": "soon"}
GRAMMAR = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)
_CODES = tuple({word: code for code, word in table.items()} for table in GRAMMAR)

SILENCE = frozenset({"sil", "sp"})
ALIGN_UNITS_PER_SECOND = 25000.0  # 1/1000 of a frame at 25 fps (NOT milliseconds)
SPEAKERS = tuple(f"s{i}" for i in range(1, 35))
SPEAKER_WITHOUT_VIDEO = "s21"  # the corpus publishes no video for s21
VIDEO_SUFFIXES = (".mpg",)
_SPEAKER_RE = re.compile(r"^s\d+$")


class AlignmentError(ValueError):
    """A .align file that cannot be read as ``start end word`` lines."""


def decode_sentence(name: str) -> list[str] | None:
    """The six words a GRID file name encodes, or None if ``name`` is not a GRID sentence code."""
    if len(name) != len(GRAMMAR):
        return None
    words = [table.get(ch) for table, ch in zip(GRAMMAR, name.lower(), strict=True)]
    return None if any(w is None for w in words) else [w for w in words if w is not None]


def encode_sentence(words: list[str]) -> str | None:
    """The file-name code of six GRID words, or None when they are not a GRID sentence."""
    if len(words) != len(GRAMMAR):
        return None
    codes = [table.get(word.lower()) for table, word in zip(_CODES, words, strict=True)]
    return None if None in codes else "".join(c for c in codes if c is not None)


def parse_align(path: str | os.PathLike) -> list[Word]:
    """All entries of a .align file as (start_s, end_s, word), silence included, in file order.

    Lines are ``start end word`` in 1/25000 s (CRLF line ends in the corpus). Raises
    :class:`AlignmentError` on anything else: a wrong field count, non-integer or negative times,
    an end before its start, entries out of order, or no entries.
    """
    try:
        text = Path(path).read_text(encoding="ascii")
    except UnicodeDecodeError as err:
        raise AlignmentError(f"{path}: not ASCII text") from err
    entries: list[Word] = []
    last_end = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise AlignmentError(f"{path}:{lineno}: expected 'start end word', got {line.strip()!r}")
        try:
            start, end = int(fields[0]), int(fields[1])
        except ValueError as err:
            raise AlignmentError(f"{path}:{lineno}: times must be integers, got {line.strip()!r}") from err
        if start < 0 or end < start or start < last_end:
            raise AlignmentError(f"{path}:{lineno}: times out of order or negative: {line.strip()!r}")
        last_end = end
        entries.append((start / ALIGN_UNITS_PER_SECOND, end / ALIGN_UNITS_PER_SECOND, fields[2]))
    if not entries:
        raise AlignmentError(f"{path}: no alignment entries")
    return entries


def spoken_words(entries: list[Word]) -> list[Word]:
    """The entries that are words: ``sil`` and ``sp`` dropped (silence is the time between words)."""
    return [e for e in entries if e[2].lower() not in SILENCE]


# Data files ------------------------------------------------------------------------------------------


def load_alignment_swaps(path: str | os.PathLike | None = None) -> dict[str, str]:
    """video speaker -> Zenodo alignment folder holding its words ("" when none is known)."""
    path = Path(path) if path else data_manifests_dir() / "grid" / "zenodo_alignment_swaps.csv"
    with open(path, newline="") as fh:
        return {row["video_speaker"]: row["alignment_folder"] for row in csv.DictReader(fh)}


# Discovery -------------------------------------------------------------------------------------------


@dataclass
class _SpeakerFolders:
    speaker: str
    layout: str  # "zenodo" | "site"
    videos: list[Path]
    align_dir: Path | None  # None: no folder is known to hold this speaker's words
    audio_dirs: list[Path]


def _locate_speaker(root: Path, speaker: str, swaps: dict[str, str]) -> _SpeakerFolders:
    spk_dir = root / speaker
    site_video = spk_dir / "video" / "mpg_6000"
    if site_video.is_dir():
        videos = sorted(Path(e.path) for e in os.scandir(site_video)
                        if e.name.lower().endswith(VIDEO_SUFFIXES) and e.is_file())
        audio_dirs = [spk_dir / "audio_25k", root / "audio_25k" / speaker]
        return _SpeakerFolders(speaker, "site", videos, spk_dir / "align", audio_dirs)
    videos = sorted(Path(e.path) for e in os.scandir(spk_dir)
                    if e.name.lower().endswith(VIDEO_SUFFIXES) and e.is_file())
    folder = swaps.get(speaker, speaker)
    align_dir = root / "alignments" / folder if folder else None
    return _SpeakerFolders(speaker, "zenodo", videos, align_dir, [root / "audio_25k" / speaker])


def _best_matching_folder(root: Path, videos: list[Path]) -> tuple[str, float] | None:
    """The Zenodo alignment folder whose file names cover most of ``videos`` (a hint for the user)."""
    align_root = root / "alignments"
    if not align_root.is_dir() or not videos:
        return None
    names = {v.stem for v in videos}
    best: tuple[str, float] | None = None
    for folder in align_root.iterdir():
        if folder.is_dir():
            cover = len(names & {p.stem for p in folder.glob("*.align")}) / len(names)
            if best is None or cover > best[1]:
                best = (folder.name, cover)
    return best


@register_recipe("grid")
class GridRecipe(CommittedSplitRecipe):
    """GRID in the Zenodo or the original-site layout, with checked alignments and committed splits."""

    root_help = ("GRID root: Zenodo layout (s1/*.mpg, alignments/s1/*.align) or the original site layout "
                 "(s1/video/mpg_6000/*.mpg, s1/align/*.align).")
    options = (
        RecipeOption("--audio", "audio", "auto",
                     "auto: the audio_25k wavs where present, else the video's track; video: always the "
                     "video's own track.", ("auto", "video")),
    )

    def discover(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        audio: str = "auto",
        apply_swaps: bool = True,
        swaps_csv: str | os.PathLike | None = None,
        min_alignment_coverage: float = 0.5,
        **opts: Any,
    ) -> Discovery:
        """List GRID clips under ``root``.

        ``audio``: "auto" uses ``audio_25k`` wavs where present, "video" always the video's own track
        (the separate wavs are reported shorter than the videos on some clips). ``apply_swaps`` applies
        the Zenodo alignment-folder mapping (Zenodo layout only). A speaker whose alignment folder
        covers fewer than ``min_alignment_coverage`` of its videos is treated as mismatched.
        """
        parts = self.committed_parts(self._check_arguments(split, opts, audio=audio))
        root = check_root(root, "grid")
        swaps = load_alignment_swaps(swaps_csv) if apply_swaps else {}

        problems: list[str] = []
        clips: list[ClipSource] = []
        speakers = sorted((p.name for p in root.iterdir() if p.is_dir() and _SPEAKER_RE.match(p.name)),
                          key=natural_key)
        used_align_dirs: set[Path] = set()
        for speaker in speakers:
            folders = _locate_speaker(root, speaker, swaps)
            if not folders.videos:
                why = " (GRID publishes no video for s21)" if speaker == SPEAKER_WITHOUT_VIDEO else ""
                problems.append(f"{speaker}: speaker folder holds no videos{why}")
                continue
            if folders.align_dir is not None:
                used_align_dirs.add(folders.align_dir.resolve())
            clips.extend(
                self._speaker_clips(root, folders, audio, min_alignment_coverage, problems, parts)
            )
        if SPEAKER_WITHOUT_VIDEO not in speakers and len(speakers) > len(SPEAKERS) // 2:
            problems.append("s21: not present (expected: GRID publishes no video for s21)")
        align_root = root / "alignments"
        if align_root.is_dir():
            for folder in sorted(align_root.iterdir(), key=lambda p: natural_key(p.name)):
                if folder.is_dir() and folder.resolve() not in used_align_dirs:
                    problems.append(f"alignments/{folder.name}: used by no speaker's videos under {root}")
        if not clips:
            raise CorpusError(
                f"grid: no GRID videos under {root}. Expected <root>/s1/*.mpg (Zenodo layout) or "
                "<root>/s1/video/mpg_6000/*.mpg (original site layout)."
            )
        return Discovery(clips=clips, problems=problems)

    def _speaker_clips(
        self,
        root: Path,
        folders: _SpeakerFolders,
        audio: str,
        min_coverage: float,
        problems: list[str],
        parts: CommittedParts,
    ) -> list[ClipSource]:
        speaker = folders.speaker
        align_dir = folders.align_dir
        align_files: dict[str, Path] = {}
        if align_dir is not None and align_dir.is_dir():
            align_files = {p.stem: p for p in align_dir.glob("*.align")}
        names = [v.stem for v in folders.videos]
        coverage = sum(n in align_files for n in names) / len(names)
        folder_mismatch = bool(align_files) and coverage < min_coverage
        where = "none known" if align_dir is None else str(align_dir.relative_to(root))
        if folder_mismatch:
            hint = _best_matching_folder(root, folders.videos)
            hint_text = f"; best match: alignments/{hint[0]} ({hint[1]:.0%})" if hint and hint[1] > 0 else ""
            problems.append(
                f"{speaker}: alignment folder {where} matches only {coverage:.0%} of {len(names)} videos "
                f"(mismatched folder; words dropped{hint_text})"
            )
        elif align_files and coverage < 1.0:
            missing = sum(n not in align_files for n in names)
            problems.append(f"{speaker}: {missing} of {len(names)} videos have no alignment file in {where}")
        elif not align_files:
            hint = _best_matching_folder(root, folders.videos) if folders.layout == "zenodo" else None
            hint_text = f"; alignments/{hint[0]} matches {hint[1]:.0%}" if hint and hint[1] > 0 else ""
            problems.append(f"{speaker}: no alignment files (folder: {where}){hint_text}")

        if parts.speakers and speaker not in parts.speakers:
            problems.append(f"{speaker}: not in speaker_independent.csv; split 'unassigned'")
        wavs = _list_audio(folders.audio_dirs) if audio == "auto" else {}
        malformed: list[str] = []
        mismatched: list[str] = []
        clips = []
        for video, name in zip(folders.videos, names, strict=True):
            clip_id = f"{speaker}_{name}"
            flags: list[str] = []
            words: list[Word] = []
            expected_s: float | None = None
            if folder_mismatch:
                flags.append("alignment_mismatch")
            elif name not in align_files:
                flags.append("no_alignment")
            else:
                try:
                    entries = parse_align(align_files[name])
                except AlignmentError as err:
                    flags.append("alignment_malformed")
                    malformed.append(str(err))
                else:
                    words = spoken_words(entries)
                    if encode_sentence([w for _, _, w in words]) != name.lower():
                        flags.append("alignment_mismatch")
                        mismatched.append(name)
                        words = []
                    else:  # the alignment covers the whole recording, trailing silence included
                        expected_s = max(end for _, end, _ in entries)
            clips.append(
                ClipSource(
                    clip_id=clip_id,
                    corpus="grid",
                    speaker=speaker,
                    split=parts.part(clip_id, speaker),
                    source_video=video,
                    source_audio=wavs.get(name),
                    transcript=" ".join(w for _, _, w in words),
                    words=words,
                    flags=flags,
                    protocol=parts.protocol,
                    expected_duration_s=expected_s,
                )
            )
        if malformed:
            problems.append(f"{speaker}: {len(malformed)} malformed .align file(s), words dropped: "
                            + "; ".join(malformed[:3]) + (" ..." if len(malformed) > 3 else ""))
        if mismatched:
            problems.append(f"{speaker}: {len(mismatched)} alignment(s) whose words do not spell their file "
                            f"name, words dropped: {', '.join(mismatched[:5])}"
                            + (" ..." if len(mismatched) > 5 else ""))
        return clips


def _list_audio(audio_dirs: list[Path]) -> dict[str, Path]:
    """name -> wav over the candidate folders (earlier folders win); one listing per folder."""
    found: dict[str, Path] = {}
    for folder in reversed(audio_dirs):
        if folder.is_dir():
            found.update({Path(e.name).stem: Path(e.path) for e in os.scandir(folder)
                          if e.name.lower().endswith(".wav") and e.is_file()})
    return found


#: The committed protocols' files, read as :class:`GridRecipe` reads them.
load_speaker_split = GridRecipe.load_speaker_split
load_seen_split = GridRecipe.load_seen_split
