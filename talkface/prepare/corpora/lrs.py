"""LRS2 / LRS3-style folders (Oxford VGG "Lip Reading Sentences"): ``<id>/<utt>.mp4`` with ``<utt>.txt``.

Three layouts, detected from what is at the root:

* **LRS2** (BBC programmes): list files ``train.txt``, ``val.txt``, ``test.txt`` (and ``pretrain.txt``)
  at the root, lines ``<id>/<utt>`` (``test.txt`` adds a second column, ``NF``/``MV``, ignored); the
  clips under ``mvlrs_v1/main/`` (or ``main/``; ``pretrain/`` for ``pretrain.txt``). ``<id>`` is a
  BBC *programme*, not a person: one programme holds several speakers and a speaker may appear in
  several programmes, so "speaker" below means programme for LRS2.
* **LRS3** (TED / TEDx): folders ``pretrain/``, ``trainval/``, ``test/`` at the root, each of
  ``<id>/<utt>.mp4``; ``<id>`` is a YouTube video id of one talk, i.e. (nearly always) one speaker.
* **plain**: ``<root>/<id>/<utt>.mp4`` with no lists or part folders.

Transcripts: the first line of ``<utt>.txt`` is ``Text:  WORDS``; a ``WORD START END ASDSCORE`` table,
where present (LRS2 pretrain, LRS3), gives word times relative to the clip. Clip ids are
``<id>__<utt>`` (``pretrain__<id>__<utt>`` for pretrain clips, which may share ids with the others).

Protocols: ``official`` (default): LRS2's lists, LRS3's folders (trainval -> train, test -> test);
the test parts are where LSE-C / LSE-D are usually reported. ``speaker-hash``: a seeded hash of
``<id>`` (no id in two parts). ``hash``: a seeded hash of the clip id. Pretrain clips (long,
multi-sentence) are skipped unless ``--pretrain train``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkface.prepare.corpora.base import (
    ClipSource,
    CorpusError,
    CorpusRecipe,
    Discovery,
    HashSplitRule,
    RecipeOption,
    Word,
    check_root,
    natural_key,
    register_recipe,
    rule_from_fractions,
)
from talkface.store.splits import CORPUS_PROTOCOLS

SPLITS = CORPUS_PROTOCOLS["lrs"]
LRS2_LISTS = {"train.txt": "train", "val.txt": "val", "test.txt": "test", "pretrain.txt": "train"}
LRS3_PARTS = {"trainval": "train", "test": "test", "pretrain": "train"}
PRETRAIN = "pretrain"
VIDEO_SUFFIX = ".mp4"
ID_SEPARATOR = "__"  # as in the folder and voxceleb recipes' ids
_WORD_HEADER = ("WORD", "START", "END")


class TranscriptError(ValueError):
    """An LRS ``.txt`` without a ``Text:`` first line."""


def parse_transcript(path: str | os.PathLike) -> tuple[str, list[Word]]:
    """(text, words) of an LRS ``.txt``: the ``Text:`` line, and the word table's rows if present.

    Raises :class:`TranscriptError` when the first non-empty line is not ``Text: ...``.
    """
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    lines = [line.strip() for line in lines]
    first = next((line for line in lines if line), "")
    if not first.lower().startswith("text:"):
        raise TranscriptError(f"{path}: first line is not 'Text:  ...' (got {first[:40]!r})")
    text = " ".join(first[len("text:"):].split())
    words: list[Word] = []
    in_table = False
    for line in lines:
        fields = line.split()
        if tuple(f.upper() for f in fields[:3]) == _WORD_HEADER:
            in_table = True
            continue
        if in_table and len(fields) >= 3:
            try:
                words.append((float(fields[1]), float(fields[2]), fields[0]))
            except ValueError:
                in_table = False
    return text, words


def read_list(path: Path) -> list[str]:
    """``<id>/<utt>`` entries of an LRS2 list file (a second column such as ``NF`` is ignored)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if fields:
            entry = fields[0].removesuffix(VIDEO_SUFFIX).strip("/")
            out.append(entry)
    return out


@dataclass
class _Folder:
    """A folder of ``<id>/<utt>.mp4`` clips and how its clips are named and split."""

    path: Path
    subset: str  # "main", "trainval", "test", "pretrain" or "" (plain layout)
    official: str | None  # the part every clip gets under 'official' (LRS3 folders), None: from lists


def _examples(items: list[str], n: int, sep: str = ", ") -> str:
    return sep.join(items[:n]) + (" ..." if len(items) > n else "")


def _first_dir(root: Path, *candidates: str) -> Path | None:
    for rel in candidates:
        if (root / rel).is_dir():
            return root / rel
    return None


def _layout(root: Path, pretrain: bool) -> tuple[str, list[_Folder], dict[str, Path]]:
    """("lrs2" | "lrs3" | "plain", clip folders, LRS2 list files by name)."""
    lists = {name: root / name for name in LRS2_LISTS if (root / name).is_file()}
    if lists:
        folders = []
        main = _first_dir(root, "mvlrs_v1/main", "main")
        if main is not None:
            folders.append(_Folder(main, "main", None))
        pre = _first_dir(root, "mvlrs_v1/pretrain", "pretrain")
        if pretrain and pre is not None:
            folders.append(_Folder(pre, PRETRAIN, None))
        if not folders:
            raise CorpusError(
                f"lrs: {root} holds LRS2 list files ({', '.join(sorted(lists))}) but no clip folder; "
                "expected "
                "<root>/mvlrs_v1/main/<id>/<utt>.mp4 (or <root>/main/<id>/<utt>.mp4)"
            )
        return "lrs2", folders, lists
    parts = [name for name in LRS3_PARTS if (root / name).is_dir()]
    if parts:
        folders = [_Folder(root / name, name, LRS3_PARTS[name]) for name in ("trainval", "test", "pretrain")
                   if name in parts and (pretrain or name != PRETRAIN)]
        return "lrs3", folders, {}
    return "plain", [_Folder(root, "", None)], {}


def _clips_in(folder: Path) -> list[tuple[str, str, Path]]:
    """(id, utt, video) for every ``<id>/<utt>.mp4`` under ``folder``, in natural order."""
    found = []
    for id_dir in os.scandir(folder):
        if not id_dir.is_dir() or id_dir.name.startswith("."):
            continue
        for entry in os.scandir(id_dir.path):
            name = entry.name
            if entry.is_file() and name.lower().endswith(VIDEO_SUFFIX) and not name.startswith("."):
                found.append((id_dir.name, name[: -len(VIDEO_SUFFIX)], Path(entry.path)))
    return sorted(found, key=lambda t: (natural_key(t[0]), natural_key(t[1])))


@register_recipe("lrs")
class LrsRecipe(CorpusRecipe):
    """LRS2 / LRS3-style folders (<id>/<utt>.mp4 + .txt) with the official test sets."""

    splits = SPLITS
    root_help = ("LRS2 root (train.txt, val.txt, test.txt and mvlrs_v1/main/<id>/<utt>.mp4), LRS3 root "
                 "(trainval/, test/, pretrain/ of <id>/<utt>.mp4), or any <root>/<id>/<utt>.mp4 folder; "
                 "<utt>.txt transcripts start with 'Text:'.")
    options = (
        RecipeOption("--pretrain", "pretrain", "skip",
                     "skip: leave the long multi-sentence pretrain clips out; train: include them in train.",
                     ("skip", "train")),
    )

    def discover(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        pretrain: str = "skip",
        seed: int = 0,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        **opts: Any,
    ) -> Discovery:
        """List the clips under ``root``; ``seed`` and ``fractions`` set the two hash protocols."""
        protocol = self._check_arguments(split, opts, pretrain=pretrain)
        rule = rule_from_fractions(fractions, seed)
        root = check_root(root, "lrs")
        layout, folders, lists = _layout(root, pretrain == "train")
        if protocol == "official" and layout == "plain":
            raise CorpusError(
                f"lrs: protocol 'official' needs LRS2 list files (train.txt, val.txt, test.txt) or LRS3 "
                f"folders (trainval/, test/) at {root}; for a plain <id>/<utt>.mp4 folder use --protocol "
                "speaker-hash or hash"
            )
        listed = self._listed(lists, pretrain == "train")
        problems: list[str] = []
        clips: list[ClipSource] = []
        seen_ids: dict[str, Path] = {}
        found_keys: set[tuple[str, str]] = set()  # (folder kind, "<id>/<utt>") on disk
        unlisted: list[str] = []
        bad_text: list[str] = []
        for folder in folders:
            for vid, utt, video in _clips_in(folder.path):
                key = f"{vid}/{utt}"
                prefix = (PRETRAIN,) if folder.subset == PRETRAIN else ()
                found_keys.add((PRETRAIN if prefix else "main", key))
                clip_id = ID_SEPARATOR.join((*prefix, vid, utt))
                if clip_id in seen_ids:
                    problems.append(f"{video}: clip id {clip_id} already used by {seen_ids[clip_id]}; "
                                    "skipped")
                    continue
                seen_ids[clip_id] = video
                flags: list[str] = []
                text, words = "", []
                txt = video.with_suffix(".txt")
                if not txt.is_file():
                    flags.append("no_transcript")
                else:
                    try:
                        text, words = parse_transcript(txt)
                    except TranscriptError as err:
                        flags.append("transcript_malformed")
                        bad_text.append(str(err))
                part = self._part(protocol, rule, folder, listed, clip_id, vid, key, prefix)
                if part == "unassigned":
                    unlisted.append(key)
                clips.append(ClipSource(clip_id=clip_id, corpus="lrs", speaker=vid, split=part,
                                        source_video=video, transcript=text, words=words, flags=flags,
                                        protocol=protocol))
        if not clips:
            where = ", ".join(str(f.path) for f in folders)
            raise CorpusError(f"lrs: no <id>/<utt>.mp4 clips under {where}. Expected LRS2 "
                              "(mvlrs_v1/main/<id>/<utt>.mp4 with train.txt/val.txt/test.txt), LRS3 "
                              "(trainval/ and test/ of <id>/<utt>.mp4) or <root>/<id>/<utt>.mp4")
        if protocol == "official" and unlisted:
            problems.append(f"{len(unlisted)} clip(s) are in no list file, part 'unassigned': "
                            + _examples(unlisted, 5))
        if protocol == "official" and lists:
            for name, entries in self._list_entries(lists, pretrain == "train").items():
                where = PRETRAIN if name == "pretrain.txt" else "main"
                missing = [e for e in entries if (where, e) not in found_keys]
                if missing:
                    problems.append(f"{name}: {len(missing)} of {len(entries)} listed clip(s) are not under "
                                    f"{root}: " + _examples(missing, 3))
        if bad_text:
            problems.append(f"{len(bad_text)} transcript(s) without a 'Text:' first line, flagged "
                            "transcript_malformed: " + _examples(bad_text, 3, "; "))
        missing_text = sum("no_transcript" in c.flags for c in clips)
        if missing_text:
            problems.append(f"{missing_text} of {len(clips)} clip(s) have no <utt>.txt transcript")
        if layout == "lrs2":
            problems.append("LRS2: the <id> folder is a BBC programme, not a person; 'speaker' means "
                            "programme")
        return Discovery(clips=clips, problems=problems)

    # helpers -----------------------------------------------------------------------------------------

    @staticmethod
    def _list_entries(lists: dict[str, Path], with_pretrain: bool) -> dict[str, list[str]]:
        return {name: read_list(path) for name, path in lists.items()
                if with_pretrain or name != "pretrain.txt"}

    def _listed(self, lists: dict[str, Path], with_pretrain: bool) -> dict[tuple[str, str], str]:
        """(folder kind, "<id>/<utt>") -> part, from the LRS2 list files (pretrain entries kept apart)."""
        listed: dict[tuple[str, str], str] = {}
        for name, entries in self._list_entries(lists, with_pretrain).items():
            kind = PRETRAIN if name == "pretrain.txt" else "main"
            for entry in entries:
                listed.setdefault((kind, entry), LRS2_LISTS[name])
        return listed

    @staticmethod
    def _part(protocol: str, rule: HashSplitRule, folder: _Folder, listed: dict[tuple[str, str], str],
              clip_id: str, vid: str, key: str, prefix: tuple[str, ...]) -> str:
        if protocol == "speaker-hash":
            return rule.assign(vid)
        if protocol == "hash":
            return rule.assign(clip_id)
        if folder.official is not None:
            return folder.official
        return listed.get((PRETRAIN if prefix else "main", key), "unassigned")
