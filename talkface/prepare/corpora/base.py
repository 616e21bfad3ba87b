"""What a corpus recipe finds: one :class:`ClipSource` per clip, plus folder-level problems.

A recipe (lhotse style, one module per corpus) only *discovers*: it walks a corpus folder, pairs each
video with its audio and transcript, assigns the split and notes anything odd. It decodes no media, so
discovering 34,000 GRID clips takes seconds; the per-clip pipeline does the heavy work afterwards.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkface.registry import Registry
from talkface.store.splits import (  # noqa: F401  (re-exported: the recipes' helpers)
    COMMITTED_SPLITS,
    CORPUS_PROTOCOLS,
    CommittedParts,
    CorpusError,
    HashSplitRule,
    committed_parts,
    committed_speaker_split,
    data_manifests_dir,
    hash_fraction,
    recognise_protocol,
    rule_from_fractions,
)

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
    "hash_fraction",
]

Word = tuple[float, float, str]





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


class CommittedSplitRecipe(CorpusRecipe):
    """A recipe whose two protocols are committed in ``data_manifests/<folder>/`` (GRID, TCD-TIMIT):
    ``speaker-independent`` from ``speaker_independent.csv``, ``seen`` from its seen file. Which folder
    and file are the dataset contract's (:data:`talkface.store.splits.COMMITTED_SPLITS`)."""

    splits = ("speaker-independent", "seen")  # CORPUS_PROTOCOLS of grid and tcd-timit

    @classmethod
    def load_speaker_split(cls, path: str | os.PathLike | None = None) -> dict[str, str]:
        """speaker -> part of the speaker-independent protocol (``path``: another table)."""
        return committed_speaker_split(COMMITTED_SPLITS[cls.name][0], path)

    @classmethod
    def load_seen_split(cls, path: str | os.PathLike | None = None) -> HashSplitRule:
        """The seen rule: a seeded hash of the clip id decides each clip's part (``path``: another file)."""
        folder, seen_file = COMMITTED_SPLITS[cls.name]
        return HashSplitRule.from_csv(path or data_manifests_dir() / folder / seen_file)

    def committed_parts(self, protocol: str) -> CommittedParts:
        return committed_parts(self.name, protocol)

    def recognise_protocol(self, rows: list[tuple[str, str, str]]) -> str | None:
        """``seen`` or ``speaker-independent`` when every ``(clip_id, speaker, part)`` row follows that
        protocol's rule (``seen`` is tried first)."""
        return recognise_protocol(self.name, rows)


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

    def decorate(recipe: type[CorpusRecipe]) -> type[CorpusRecipe]:
        CORPORA.register_named(name)(recipe)
        CORPUS_PROTOCOLS.setdefault(name, tuple(recipe.splits))  # the dataset contract's hints name them
        return recipe

    return decorate


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


