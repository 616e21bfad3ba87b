"""What a corpus recipe finds: one :class:`ClipSource` per clip, plus folder-level problems.

A recipe (lhotse style, one module per corpus) only *discovers*: it walks a corpus folder, pairs each
video with its audio and transcript, assigns the split and notes anything odd. It decodes no media, so
discovering 34,000 GRID clips takes seconds; the per-clip pipeline does the heavy work afterwards.
"""

from __future__ import annotations

import csv
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkface.registry import Registry, UnknownName

#: What ``talkface.prepare.corpora`` offers its users; the recipe modules import the helpers for
#: writing a recipe (check_root, natural_key, ...) from here by name.
__all__ = [
    "CORPORA",
    "ClipSource",
    "CorpusError",
    "CorpusRecipe",
    "Discovery",
    "HashSplitRule",
    "RecipeOption",
    "available_recipes",
    "get_recipe",
    "hash_fraction",
]

Word = tuple[float, float, str]


class CorpusError(ValueError):
    """A corpus folder that cannot be used at all (missing, empty, wrong layout)."""


@dataclass
class ClipSource:
    """One clip to prepare: where its media lie and what is known about it before decoding."""

    clip_id: str
    corpus: str
    speaker: str
    split: str
    source_video: Path
    source_audio: Path | None = None  # None: use the video's own audio track
    transcript: str = ""
    words: list[Word] = field(default_factory=list)  # (start_s, end_s, word); empty if unknown
    flags: list[str] = field(default_factory=list)  # e.g. "no_alignment", "alignment_mismatch"
    protocol: str = ""  # the split protocol ``split`` belongs to (e.g. "seen")
    #: how long the clip should be, when the corpus says (GRID: the end of its alignment, silence
    #: included); a video that ends well before it is truncated
    expected_duration_s: float | None = None


@dataclass
class Discovery:
    """All clips a recipe found, and the folder-level findings a user should read."""

    clips: list[ClipSource]
    problems: list[str] = field(default_factory=list)

    def by_id(self) -> dict[str, ClipSource]:
        return {c.clip_id: c for c in self.clips}

    def speakers(self) -> list[str]:
        return sorted({c.speaker for c in self.clips}, key=natural_key)

    def in_split(self, split: str) -> list[ClipSource]:
        return [c for c in self.clips if c.split == split]


@dataclass(frozen=True)
class RecipeOption:
    """A discovery option of one recipe, offered as ``--<flag>`` by its ``prepare`` command.

    ``param`` is the keyword of ``discover``; the chosen value is part of the dataset's settings, so a
    resumed run with another value is refused like any other changed setting.
    """

    flag: str
    param: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()


class CorpusRecipe(ABC):
    """A corpus layout: ``discover(root, split)`` lists its clips without decoding any media.

    Registered with ``@register_recipe(name)``; ``talkface prepare <name>`` is generated from the
    registry: ``root_help`` documents its argument, ``options`` adds recipe-specific flags.
    """

    name: str = ""
    splits: tuple[str, ...] = ()  # split protocols this recipe offers; the first is the default
    root_help: str = "Corpus folder."
    options: tuple[RecipeOption, ...] = ()

    @abstractmethod
    def discover(self, root: str | os.PathLike, split: str | None = None, **opts: Any) -> Discovery:
        """Walk ``root`` and return every clip with its split; raise :class:`CorpusError` if none."""

    def _check_split(self, split: str | None) -> str:
        split = split or self.splits[0]
        if split not in self.splits:
            raise CorpusError(f"{self.name}: unknown split protocol {split!r}; choose one of "
                              f"{', '.join(self.splits)}")
        return split

    def _check_arguments(self, split: str | None, opts: dict[str, Any], **chosen: Any) -> str:
        """The protocol, after the checks every ``discover`` makes: no unknown options, each ``chosen``
        value one of its :class:`RecipeOption`'s choices, a protocol this recipe offers."""
        if opts:
            raise CorpusError(f"{self.name}: unknown options {sorted(opts)}")
        for option in self.options:
            value = chosen.get(option.param)
            if option.choices and option.param in chosen and value not in option.choices:
                raise CorpusError(f"{self.name}: {option.param} must be one of {', '.join(option.choices)}, "
                                  f"got {value!r}")
        return self._check_split(split)

    def recognise_protocol(self, rows: list[tuple[str, str, str]]) -> str | None:
        """Which of this recipe's protocols gave ``(clip_id, speaker, part)`` rows, if it can tell
        (used to name the protocol of a dataset written before protocols were recorded)."""
        return None


@dataclass(frozen=True)
class CommittedParts:
    """The part of each clip under one committed protocol: a speaker table (``speaker-independent``;
    a speaker it lacks is ``unassigned``) or a seeded per-clip hash rule (``seen``)."""

    protocol: str
    speakers: dict[str, str]  # speaker -> part under speaker-independent; empty under seen
    seen: HashSplitRule | None  # the rule under seen; None under speaker-independent

    def part(self, clip_id: str, speaker: str) -> str:
        if self.seen is not None:
            return self.seen.assign(clip_id)
        return self.speakers.get(speaker, "unassigned")


class CommittedSplitRecipe(CorpusRecipe):
    """A recipe whose two protocols are committed in ``data_manifests/<manifest_folder>/`` (GRID,
    TCD-TIMIT): ``speaker-independent`` from ``speaker_independent.csv``, ``seen`` from ``seen_file``."""

    splits = ("speaker-independent", "seen")
    manifest_folder: str = ""
    seen_file: str = ""

    @classmethod
    def load_speaker_split(cls, path: str | os.PathLike | None = None) -> dict[str, str]:
        """speaker -> part of the speaker-independent protocol (``path``: another table)."""
        return committed_speaker_split(cls.manifest_folder, path)

    @classmethod
    def load_seen_split(cls, path: str | os.PathLike | None = None) -> HashSplitRule:
        """The seen rule: a seeded hash of the clip id decides each clip's part (``path``: another file)."""
        return HashSplitRule.from_csv(path or data_manifests_dir() / cls.manifest_folder / cls.seen_file)

    def committed_parts(self, protocol: str) -> CommittedParts:
        return CommittedParts(protocol,
                              self.load_speaker_split() if protocol == "speaker-independent" else {},
                              self.load_seen_split() if protocol == "seen" else None)

    def recognise_protocol(self, rows: list[tuple[str, str, str]]) -> str | None:
        """``seen`` or ``speaker-independent`` when every ``(clip_id, speaker, part)`` row follows that
        protocol's rule (``seen`` is tried first)."""
        if not rows:
            return None
        for protocol in ("seen", "speaker-independent"):
            parts = self.committed_parts(protocol)
            if all(part == parts.part(clip_id, speaker) for clip_id, speaker, part in rows):
                return protocol
        return None


class HashSplitRecipe(CorpusRecipe):
    """A recipe whose split protocols are seeded hashes: ``seed`` and ``fractions`` (train, val, test)."""

    def discover(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        seed: int = 0,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        **opts: Any,
    ) -> Discovery:
        """List the clips under ``root``; ``fractions`` are (train, val, test) of the hash splits."""
        split = self._check_arguments(split, opts)
        rule = rule_from_fractions(fractions, seed)
        return self._discover(check_root(root, self.name), split, rule)

    @abstractmethod
    def _discover(self, root: Path, protocol: str, rule: HashSplitRule) -> Discovery:
        """The clips under an existing ``root``, parts assigned by ``rule`` under ``protocol``."""


CORPORA: Registry[type[CorpusRecipe]] = Registry("corpus recipe")


def register_recipe(name: str) -> Callable[[type[CorpusRecipe]], type[CorpusRecipe]]:
    """Class decorator: make a recipe available as ``get_recipe(name)`` and ``talkface prepare name``."""

    return CORPORA.register_named(name)


def available_recipes() -> list[str]:
    import talkface.prepare.corpora  # noqa: F401  (registers the built-in recipes)

    return CORPORA.names()


def get_recipe(name: str) -> CorpusRecipe:
    """The recipe registered under ``name`` (``grid``, ``folder``, ``voxceleb``)."""
    import talkface.prepare.corpora  # noqa: F401  (registers the built-in recipes)

    try:
        return CORPORA.get(name)()
    except UnknownName:
        known = ", ".join(available_recipes())
        raise CorpusError(f"unknown corpus recipe {name!r}; available: {known}") from None


def check_root(root: str | os.PathLike, corpus: str) -> Path:
    """``root`` as a Path, or a :class:`CorpusError` that says what was expected."""
    path = Path(root).expanduser()
    if not path.exists():
        raise CorpusError(f"{corpus}: corpus folder {path} does not exist")
    if not path.is_dir():
        raise CorpusError(f"{corpus}: {path} is a file; give the corpus folder")
    return path


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that puts s2 before s10."""
    out: list[Any] = []
    num = ""
    for ch in text:
        if ch.isdigit():
            num += ch
            continue
        if num:
            out.append((0, int(num), ""))
            num = ""
        out.append((1, 0, ch))
    if num:
        out.append((0, int(num), ""))
    return tuple(out)


# Seeded hash splits ------------------------------------------------------------------------------------


def hash_fraction(clip_id: str, seed: int | str) -> float:
    """A uniform number in [0, 1) fixed by (seed, clip_id) alone: the one hash behind every seeded
    split in talkface (corpus split rules, and the validation fallback of
    :meth:`talkface.store.dataset.Dataset.parts`).

    Depending on nothing else is what makes a hash split stable: adding or removing clips never moves
    an existing clip to another split (unlike a shuffled list cut at fixed positions).
    """
    digest = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class HashSplitRule:
    """Split by ``hash_fraction(clip_id, seed)``: ``split`` where ``lower <= h < upper``."""

    bounds: tuple[tuple[str, float, float], ...]
    seed: int = 0
    hash: str = "sha256"

    def __post_init__(self) -> None:
        if self.hash != "sha256":
            raise CorpusError(f"hash split: only sha256 is implemented, got {self.hash!r}")
        edges = sorted((lo, hi) for _, lo, hi in self.bounds)
        if not edges or edges[0][0] != 0.0 or edges[-1][1] != 1.0:
            raise CorpusError(f"hash split bounds must cover [0, 1): {self.bounds}")
        for (_, hi), (lo, _) in zip(edges, edges[1:], strict=False):
            if abs(hi - lo) > 1e-12:
                raise CorpusError(f"hash split bounds leave a gap or overlap at {hi} / {lo}: {self.bounds}")

    def assign(self, clip_id: str) -> str:
        h = hash_fraction(clip_id, self.seed)
        for split, lo, hi in self.bounds:
            if lo <= h < hi:
                return split
        raise AssertionError(f"hash {h} outside [0, 1)")  # unreachable: bounds cover [0, 1)

    def fractions(self) -> dict[str, float]:
        return {split: hi - lo for split, lo, hi in self.bounds}

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> HashSplitRule:
        """Read ``split,lower,upper,seed,hash`` rows (one seed and hash for all rows)."""
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise CorpusError(f"{path}: no split rows")
        seeds = {r["seed"] for r in rows}
        hashes = {r["hash"] for r in rows}
        if len(seeds) != 1 or len(hashes) != 1:
            raise CorpusError(f"{path}: every row must share one seed and one hash")
        bounds = tuple((r["split"], float(r["lower"]), float(r["upper"])) for r in rows)
        return cls(bounds=bounds, seed=int(rows[0]["seed"]), hash=rows[0]["hash"])


def rule_from_fractions(fractions: tuple[float, float, float], seed: int = 0) -> HashSplitRule:
    """A train/val/test hash split with the given fractions (which must sum to 1)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise CorpusError(f"split fractions (train, val, test) must be >= 0 and sum to 1, got {fractions}")
    train, val, _ = fractions
    return HashSplitRule(
        bounds=(("train", 0.0, train), ("val", train, train + val), ("test", train + val, 1.0)), seed=seed
    )


def data_manifests_dir() -> Path:
    """Committed split lists and corpus fix-ups: ``$TALKFACE_DATA_MANIFESTS`` or the repo's folder."""
    env = os.environ.get("TALKFACE_DATA_MANIFESTS")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "data_manifests"
    if not path.is_dir():
        raise CorpusError(
            f"data_manifests folder not found at {path}: install talkface from its source tree "
            "(pip install -e .) or set TALKFACE_DATA_MANIFESTS to the repository's data_manifests folder"
        )
    return path


def committed_speaker_split(corpus_folder: str, path: str | os.PathLike | None = None) -> dict[str, str]:
    """speaker -> part of a committed speaker-independent protocol: ``path``, or
    ``data_manifests/<corpus_folder>/speaker_independent.csv`` (columns speaker, split)."""
    import csv

    path = Path(path) if path else data_manifests_dir() / corpus_folder / "speaker_independent.csv"
    with open(path, newline="") as fh:
        return {row["speaker"]: row["split"] for row in csv.DictReader(fh)}
