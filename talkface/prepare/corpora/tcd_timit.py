"""TCD-TIMIT audio-visual corpus (Harte & Gillen, IEEE Trans. Multimedia 17(5), 2015).

62 speakers read TIMIT sentences: 59 volunteers (``01M`` .. ``59F``, 98 sentences each) and 3
professional lipspeakers (``Lipspkr1`` .. ``Lipspkr3``), filmed at about 29.97 fps from the front
(``straightcam``) and at 30 degrees (``30degcam``). As distributed (one zip per speaker and camera):

    <root>/volunteers/01M/Clips/straightcam/sa1.mp4      (the per-speaker zips unpack under Clips/)
    <root>/volunteers/01M/straightcam/sa1.mp4             (also accepted: no Clips level)
    <root>/lipspeakers/Lipspkr1/Clips/straightcam/sx180.mp4
    <root>/volunteer_labelfiles.mlf, lipspeaker_labelfiles.mlf   (phoneme labels, HTK MLF)

Sentence ids are TIMIT's (``sa1``, ``si1036``, ``sx137``). The corpus ships phoneme label files, not
the sentence text: the transcript comes from a ``<sentence>.txt`` beside the video where present, or
from TIMIT's ``PROMPTS.TXT`` (LDC93S1, licensed separately) given with ``--prompts`` or found at the
root. Clip ids are ``01M_sa1`` (``01M_sa1_30degcam`` for the angled camera).

Naming problems are flags, never crashes: upper-case or padded names (``SA1.MP4``, ``42m``) are
normalised and reported; a file whose name is not a TIMIT sentence id is kept with the flag
``misnamed_file``; two files naming the same sentence keep one clip (an exact lower-case ``.mp4``
first) with the flag ``duplicate_source`` and the others listed in the problems.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkface.prepare.corpora.base import (
    ClipSource,
    CommittedParts,
    CommittedSplitRecipe,
    CorpusError,
    Discovery,
    RecipeOption,
    check_root,
    data_manifests_dir,
    natural_key,
    register_recipe,
)

GROUPS = ("volunteers", "lipspeakers")
CAMERAS = ("straightcam", "30degcam")
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".mpg"})
SENTENCE_RE = re.compile(r"^s[aix]\d+$")
_SENTENCE_PREFIX_RE = re.compile(r"^(s[aix]\d+)")
_VOLUNTEER_RE = re.compile(r"^\s*(\d{1,2})\s*([mf])\s*$", re.IGNORECASE)
_LIPSPEAKER_RE = re.compile(r"^\s*lipspkr\s*(\d+)\s*$", re.IGNORECASE)
_PROMPT_RE = re.compile(r"^(?P<text>.*\S)\s*\((?P<sid>s[aix]\d+)\)\s*$", re.IGNORECASE)
MLF_UNITS_PER_SECOND = 1e7  # HTK label times are in 100 ns
VOLUNTEER_SENTENCES = 98
PROMPT_FILE_NAMES = ("PROMPTS.TXT", "prompts.txt", "PROMPTS.txt")


# Names -----------------------------------------------------------------------------------------------


def normalise_speaker(name: str) -> str | None:
    """``01M`` / ``Lipspkr1`` for a speaker folder name (case and padding forgiven), else None."""
    m = _VOLUNTEER_RE.match(name)
    if m:
        return f"{int(m.group(1)):02d}{m.group(2).upper()}"
    m = _LIPSPEAKER_RE.match(name)
    if m:
        return f"Lipspkr{int(m.group(1))}"
    return None


def sentence_of(file_name: str) -> tuple[str | None, bool]:
    """(TIMIT sentence id, exact) of a video file name.

    ``sa1.mp4`` -> ("sa1", True); ``SA1.MP4`` -> ("sa1", False) (case differs); ``si1036 (1).mp4`` ->
    ("si1036", False); ``take3.mp4`` -> (None, False).
    """
    stem = Path(file_name).stem
    low = stem.strip().lower()
    if SENTENCE_RE.match(low):
        return low, stem == low
    m = _SENTENCE_PREFIX_RE.match(low)
    return (m.group(1), False) if m else (None, False)


def _examples(items: list[str], n: int, sep: str = ", ") -> str:
    return sep.join(items[:n]) + (" ..." if len(items) > n else "")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "unnamed"


# Transcripts and labels ------------------------------------------------------------------------------


def read_prompts(path: str | os.PathLike) -> dict[str, str]:
    """sentence id -> text from TIMIT's ``PROMPTS.TXT`` (``text (sa1)`` lines; ``;`` comments)."""
    prompts: dict[str, str] = {}
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        m = _PROMPT_RE.match(line.strip())
        if m:
            prompts[m.group("sid").lower()] = " ".join(m.group("text").split())
    if not prompts:
        raise CorpusError(f"tcd-timit: {path} holds no 'text (sa1)' prompt lines; expected TIMIT's "
                          "PROMPTS.TXT")
    return prompts


def read_sentence_txt(path: Path) -> str:
    """The text of a sentence ``.txt``: TIMIT's ``<start> <end> text`` form or plain text."""
    words = path.read_text(encoding="utf-8", errors="replace").split()
    if len(words) >= 2 and words[0].isdigit() and words[1].isdigit():
        words = words[2:]
    return " ".join(words)


@dataclass
class LabelEntry:
    """One MLF entry: its speaker, sentence and (start_s, end_s, label) rows."""

    speaker: str
    sentence: str
    rows: list[tuple[float, float, str]] = field(default_factory=list)


def parse_mlf(path: str | os.PathLike) -> tuple[dict[tuple[str, str], LabelEntry], list[str]]:
    """HTK master label file -> {(speaker, sentence): entry}, plus problems (one line each).

    Entries start with a quoted path (``"/x/volunteers/01M/Clips/straightcam/sa1.mp4"`` or
    ``"01M/sa1.rec"``), hold ``start end label`` lines in 100 ns units and end with ``.``. The speaker
    is the path's speaker-shaped folder, the sentence the file name's TIMIT id.
    """
    entries: dict[tuple[str, str], LabelEntry] = {}
    problems: list[str] = []
    current: LabelEntry | None = None
    bad_rows = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line == "#!MLF!#":
                continue
            if line.startswith('"'):
                parts = line.strip('"').replace("\\", "/").split("/")
                speaker = next((s for s in (normalise_speaker(p) for p in reversed(parts[:-1])) if s), None)
                sentence, _ = sentence_of(parts[-1])
                if speaker is None or sentence is None:
                    problems.append(f"{path}:{lineno}: label entry {line} names no speaker/sentence; skipped")
                    current = None
                    continue
                current = LabelEntry(speaker, sentence)
                entries[(speaker, sentence)] = current
                continue
            if line == ".":
                current = None
                continue
            if current is None:
                continue
            fields = line.split()
            try:
                start, end = int(fields[0]), int(fields[1])
                label = fields[2]
            except (IndexError, ValueError):
                bad_rows += 1
                continue
            current.rows.append((start / MLF_UNITS_PER_SECOND, end / MLF_UNITS_PER_SECOND, label))
    if bad_rows:
        problems.append(f"{path}: {bad_rows} label line(s) not 'start end label'; ignored")
    return entries, problems


# Committed data --------------------------------------------------------------------------------------


def load_speakers(path: str | os.PathLike | None = None) -> dict[str, dict[str, str]]:
    """speaker -> its row of ``speakers.csv`` (group, gender, age, script, notes)."""
    path = Path(path) if path else data_manifests_dir() / "tcd_timit" / "speakers.csv"
    with open(path, newline="") as fh:
        return {row["speaker"]: row for row in csv.DictReader(fh)}


def load_transcription_issues(path: str | os.PathLike | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """(speaker, sentence) -> the corpus's own note on a reading error (issue, severity, action)."""
    path = Path(path) if path else data_manifests_dir() / "tcd_timit" / "transcription_issues.csv"
    with open(path, newline="") as fh:
        return {(row["speaker"], row["sentence"]): row for row in csv.DictReader(fh)}


# Discovery -------------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    video: Path
    sentence: str | None
    exact: bool  # name is exactly <sentence>.mp4 in lower case


def _child(folder: Path, name: str) -> Path | None:
    """``folder/name``, matching the name case-insensitively (``Clips`` / ``clips``)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name.strip().lower() == name.lower():
            return entry
    return None


def _camera_dir(speaker_dir: Path, camera: str) -> Path | None:
    direct = _child(speaker_dir, camera)
    if direct is not None:
        return direct
    clips = _child(speaker_dir, "Clips")
    return _child(clips, camera) if clips is not None else None


def _videos(folder: Path) -> list[Path]:
    found = [Path(e.path) for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    return sorted((p for p in found if p.suffix.lower() in VIDEO_SUFFIXES),
                  key=lambda p: natural_key(p.name.lower()))


def _find_mlfs(root: Path) -> list[Path]:
    found = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".mlf"]
    for group in GROUPS:
        folder = _child(root, group)
        if folder is not None:
            found += [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".mlf"]
    return sorted(found)


@register_recipe("tcd-timit")
class TcdTimitRecipe(CommittedSplitRecipe):
    """TCD-TIMIT volunteers and lipspeakers (29.97 fps), with the published speaker-independent split."""

    root_help = ("TCD-TIMIT root holding volunteers/01M/Clips/straightcam/sa1.mp4 (or volunteers/01M/"
                 "straightcam/sa1.mp4) and lipspeakers/Lipspkr1/...; label files (*.mlf) at the root are "
                 "read where present.")
    options = (
        RecipeOption("--camera", "camera", "straightcam",
                     "Which camera's clips: the frontal straightcam or the 30-degree view.", CAMERAS),
        RecipeOption("--prompts", "prompts", "",
                     "TIMIT's PROMPTS.TXT for the sentence text (TCD-TIMIT ships no text); default: a "
                     "PROMPTS.TXT at the corpus root, if any."),
    )

    def discover(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        camera: str = "straightcam",
        prompts: str | os.PathLike = "",
        **opts: Any,
    ) -> Discovery:
        """List TCD-TIMIT clips of one camera under ``root``; transcripts from ``prompts`` if given."""
        parts = self.committed_parts(self._check_arguments(split, opts, camera=camera))
        root = check_root(root, "tcd-timit")
        groups = [(g, d) for g in GROUPS if (d := _child(root, g)) is not None]
        if not groups:
            raise CorpusError(
                f"tcd-timit: no volunteers/ or lipspeakers/ folder under {root}. Expected "
                "<root>/volunteers/01M/Clips/straightcam/sa1.mp4 (or <root>/volunteers/01M/straightcam/"
                "sa1.mp4) and <root>/lipspeakers/Lipspkr1/..."
            )
        problems: list[str] = []
        prompt_text = self._prompts(root, prompts, problems)
        labels, label_groups = self._labels(root, problems)
        known = load_speakers()
        issues = load_transcription_issues()

        clips: list[ClipSource] = []
        taken: dict[str, ClipSource] = {}  # clip id -> clip, over all speaker folders
        short: list[str] = []
        seen_speakers: dict[str, Path] = {}
        for group, group_dir in groups:
            for spk_dir in sorted((p for p in group_dir.iterdir() if p.is_dir()),
                                  key=lambda p: natural_key(p.name)):
                speaker = normalise_speaker(spk_dir.name)
                if speaker is None:
                    problems.append(f"{group}/{spk_dir.name}: not a TCD-TIMIT speaker folder (01M, "
                                    "Lipspkr1); skipped")
                    continue
                if speaker != spk_dir.name:
                    problems.append(f"{group}/{spk_dir.name!r}: read as speaker {speaker}")
                if speaker in seen_speakers:
                    problems.append(f"{group}/{spk_dir.name}: a second folder for speaker {speaker} "
                                    f"(first: {seen_speakers[speaker]}); its clips are checked for "
                                    "duplicates")
                seen_speakers.setdefault(speaker, spk_dir)
                if speaker not in known:
                    problems.append(f"{speaker}: not one of TCD-TIMIT's 62 speakers (speakers.csv)")
                cam_dir = _camera_dir(spk_dir, camera)
                if cam_dir is None:
                    zips = sorted(p.name for p in spk_dir.rglob("*") if p.suffix.lower() == ".zip")
                    hint = f"; unzip {', '.join(zips)} first" if zips else ""
                    problems.append(f"{group}/{spk_dir.name}: no {camera} folder (expected {spk_dir.name}/"
                                    f"Clips/{camera}/ or {spk_dir.name}/{camera}/){hint}")
                    continue
                videos = _videos(cam_dir)
                if not videos:
                    problems.append(f"{group}/{spk_dir.name}/{cam_dir.name}: holds no videos")
                    continue
                found = self._speaker_clips(
                    speaker, videos, camera, parts, prompt_text, labels, group in label_groups, issues,
                    problems, taken)
                if group == "volunteers" and len(found) < VOLUNTEER_SENTENCES:
                    short.append(f"{speaker} ({len(found)})")
                clips.extend(found)
        if short:
            problems.append(f"{len(short)} volunteer(s) with fewer than {VOLUNTEER_SENTENCES} sentences "
                            f"(an incomplete download?): " + _examples(short, 10))
        if not clips:
            raise CorpusError(
                f"tcd-timit: no {camera} videos under {root}. Expected "
                f"<root>/volunteers/01M/Clips/{camera}/sa1.mp4 or <root>/volunteers/01M/{camera}/sa1.mp4"
            )
        missing_text = sum("no_transcript" in c.flags for c in clips)
        if missing_text:
            hint = "" if prompt_text else " (give TIMIT's PROMPTS.TXT with --prompts)"
            problems.append(f"{missing_text} of {len(clips)} clip(s) have no transcript{hint}")
        return Discovery(clips=clips, problems=problems)

    # helpers -----------------------------------------------------------------------------------------

    @staticmethod
    def _prompts(root: Path, prompts: str | os.PathLike, problems: list[str]) -> dict[str, str]:
        if prompts:
            path = Path(prompts).expanduser()
            if not path.is_file():
                raise CorpusError(f"tcd-timit: prompts file {path} does not exist")
            return read_prompts(path)
        for name in PROMPT_FILE_NAMES:
            if (root / name).is_file():
                try:
                    return read_prompts(root / name)
                except CorpusError as err:
                    problems.append(str(err))
        return {}

    @staticmethod
    def _labels(root: Path, problems: list[str]) -> tuple[dict[tuple[str, str], LabelEntry], set[str]]:
        labels: dict[tuple[str, str], LabelEntry] = {}
        groups: set[str] = set()
        for mlf in _find_mlfs(root):
            entries, found = parse_mlf(mlf)
            problems.extend(found)
            labels.update(entries)
            for speaker, _ in entries:
                groups.add("lipspeakers" if speaker.startswith("Lipspkr") else "volunteers")
        return labels, groups

    def _speaker_clips(
        self,
        speaker: str,
        videos: Iterable[Path],
        camera: str,
        parts: CommittedParts,
        prompt_text: dict[str, str],
        labels: dict[tuple[str, str], LabelEntry],
        group_has_labels: bool,
        issues: dict[tuple[str, str], dict[str, str]],
        problems: list[str],
        taken: dict[str, ClipSource],
    ) -> list[ClipSource]:
        by_sentence: dict[str, list[_Candidate]] = {}
        unnamed: list[_Candidate] = []
        for video in videos:
            sentence, exact = sentence_of(video.name)
            cand = _Candidate(video, sentence, exact and video.suffix == ".mp4")
            (by_sentence.setdefault(sentence, []) if sentence else unnamed).append(cand)

        suffix = "" if camera == "straightcam" else f"_{camera}"
        renamed: list[str] = []
        duplicates: list[str] = []
        clips: list[ClipSource] = []

        def add(cand: _Candidate, clip_id: str, sentence: str | None, flags: list[str]) -> None:
            if clip_id in taken:  # a second speaker folder (42M and 42m) holds the same sentence
                kept = taken[clip_id]
                if "duplicate_source" not in kept.flags:
                    kept.flags.append("duplicate_source")
                duplicates.append(f"{cand.video} (clip {clip_id} already found in "
                                  f"{kept.source_video.parent})")
                return
            transcript = ""
            sidecar = cand.video.with_suffix(".txt")
            if sidecar.is_file():
                transcript = read_sentence_txt(sidecar)
            elif sentence is not None:
                transcript = prompt_text.get(sentence, "")
            if not transcript:
                flags.append("no_transcript")
            if sentence is not None and group_has_labels and (speaker, sentence) not in labels:
                flags.append("no_labels")
            issue = issues.get((speaker, sentence or ""))
            if issue is not None:
                flags.append(f"transcript_issue={issue['severity']}")
            clip = ClipSource(clip_id=clip_id, corpus="tcd-timit", speaker=speaker,
                              split=parts.part(clip_id, speaker), source_video=cand.video,
                              transcript=transcript, flags=flags, protocol=parts.protocol)
            taken[clip_id] = clip
            clips.append(clip)

        for sentence in sorted(by_sentence, key=natural_key):
            cands = sorted(by_sentence[sentence], key=lambda c: (not c.exact, natural_key(c.video.name)))
            first, rest = cands[0], cands[1:]
            flags: list[str] = []
            if not first.exact:
                flags.append("misnamed_file")
                renamed.append(first.video.name)
            if rest:
                flags.append("duplicate_source")
                duplicates.append(f"{sentence}: kept {first.video.name}, not "
                                  + ", ".join(c.video.name for c in rest))
            add(first, f"{speaker}_{sentence}{suffix}", sentence, flags)
        for cand in unnamed:
            renamed.append(cand.video.name)
            add(cand, f"{speaker}_{_safe_name(cand.video.stem)}{suffix}", None, ["misnamed_file"])

        if renamed:
            problems.append(f"{speaker}: {len(renamed)} file name(s) not of the form <sentence>.mp4 "
                            "(e.g. sa1.mp4), flagged misnamed_file: " + _examples(renamed, 5))
        if duplicates:
            problems.append(f"{speaker}: {len(duplicates)} duplicate file(s) for one sentence, one clip kept "
                            "each (flag duplicate_source): " + _examples(duplicates, 5, "; "))
        return clips
