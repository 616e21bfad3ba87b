"""The split rules of the dataset contract: the seeded hash behind every hash split, the committed
protocols of GRID and TCD-TIMIT (``data_manifests/``), and which protocols each corpus offers.

They live with the dataset contract, not with the corpus recipes, because reading a dataset needs them
too: the validation fallback of :meth:`talkface.store.dataset.Dataset.parts`, naming the protocol of a
dataset written before protocols were recorded, and the hint that names the protocols a corpus offers.
The recipes in :mod:`talkface.prepare.corpora` declare theirs from here.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CorpusError(ValueError):
    """A corpus folder that cannot be used at all (missing, empty, wrong layout)."""


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
    """Committed split lists and corpus fix-ups: ``$TALKFACE_DATA_MANIFESTS``, else the copy a wheel
    carries (``talkface/data_manifests``), else the source tree's top-level folder (editable install)."""
    env = os.environ.get("TALKFACE_DATA_MANIFESTS")
    package = Path(__file__).resolve().parents[1]
    candidates = [Path(env)] if env else [package / "data_manifests", package.parent / "data_manifests"]
    for path in candidates:
        if path.is_dir():
            return path
    raise CorpusError(
        f"data_manifests folder not found at {' or '.join(map(str, candidates))}: reinstall talkface "
        "(pip install talkface, or pip install -e . from its source tree) or set TALKFACE_DATA_MANIFESTS "
        "to the repository's data_manifests folder"
    )


def committed_speaker_split(corpus_folder: str, path: str | os.PathLike | None = None) -> dict[str, str]:
    """speaker -> part of a committed speaker-independent protocol: ``path``, or
    ``data_manifests/<corpus_folder>/speaker_independent.csv`` (columns speaker, split)."""
    path = Path(path) if path else data_manifests_dir() / corpus_folder / "speaker_independent.csv"
    with open(path, newline="") as fh:
        return {row["speaker"]: row["split"] for row in csv.DictReader(fh)}


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


#: The split protocols each built-in corpus recipe offers, by recipe name; the first is the default.
CORPUS_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "grid": ("speaker-independent", "seen"),
    "tcd-timit": ("speaker-independent", "seen"),
    "voxceleb": ("official", "speaker-hash", "hash"),
    "lrs": ("official", "speaker-hash", "hash"),
    "folder": ("hash",),
}
#: Corpora whose protocols are committed files: recipe name -> (``data_manifests`` folder, seen file).
COMMITTED_SPLITS: dict[str, tuple[str, str]] = {
    "grid": ("grid", "seen_speaker.csv"),
    "tcd-timit": ("tcd_timit", "seen.csv"),
}


def committed_parts(corpus: str, protocol: str) -> CommittedParts:
    """The part of each clip under one of ``corpus``'s committed protocols."""
    folder, seen_file = COMMITTED_SPLITS[corpus]
    return CommittedParts(protocol,
                          committed_speaker_split(folder) if protocol == "speaker-independent" else {},
                          HashSplitRule.from_csv(data_manifests_dir() / folder / seen_file)
                          if protocol == "seen" else None)


def recognise_protocol(corpus: str, rows: list[tuple[str, str, str]]) -> str | None:
    """Which committed protocol of ``corpus`` gave ``(clip_id, speaker, part)`` rows: ``seen`` or
    ``speaker-independent`` when every row follows that protocol's rule (``seen`` is tried first); None
    when the corpus has no committed protocols or no rule fits."""
    if not rows or corpus not in COMMITTED_SPLITS:
        return None
    for protocol in ("seen", "speaker-independent"):
        parts = committed_parts(corpus, protocol)
        if all(part == parts.part(clip_id, speaker) for clip_id, speaker, part in rows):
            return protocol
    return None


# -- the unseen-identity protocol: named test speakers ------------------------------------------------

UNSEEN_IDENTITY = "unseen-identity"
#: Share of the other speakers' clips held out for validation, by the seeded hash of the clip id.
UNSEEN_VAL_FRACTION = 0.1
UNSEEN_SEED = 2020
RULES_DIR = "protocol_rules"


def unseen_identity_rule(test_speakers: Sequence[str], seed: int = UNSEEN_SEED,
                         val_fraction: float = UNSEEN_VAL_FRACTION) -> dict[str, Any]:
    """The rule of ``unseen-identity``: every clip of ``test_speakers`` is ``test``; of the other
    speakers' clips, those with ``hash_fraction(clip_id, seed) >= 1 - val_fraction`` are ``val``, the
    rest ``train``. So no test speaker is ever seen in training or validation."""
    speakers = sorted({s.strip() for s in test_speakers if s.strip()})
    if not speakers:
        raise CorpusError(f"--protocol {UNSEEN_IDENTITY} needs --test-speakers (e.g. --test-speakers s4)")
    return {"rule": UNSEEN_IDENTITY, "test_speakers": speakers, "val_fraction": float(val_fraction),
            "seed": int(seed), "hash": "sha256"}


def unseen_identity_part(clip_id: str, speaker: str, rule: dict[str, Any]) -> str:
    if speaker in rule["test_speakers"]:
        return "test"
    return "val" if hash_fraction(clip_id, rule["seed"]) >= 1.0 - rule["val_fraction"] else "train"


def protocol_rule_path(dataset_root: str | os.PathLike, protocol: str) -> Path:
    return Path(dataset_root) / RULES_DIR / f"{protocol}.json"


def read_protocol_rule(dataset_root: str | os.PathLike, protocol: str) -> dict[str, Any] | None:
    """The parameters a protocol of a prepared dataset was made with (None: it has none recorded)."""
    from talkface.store.damage import read_json_object

    path = protocol_rule_path(dataset_root, protocol)
    if not path.exists():
        return None
    return read_json_object(path, CorpusError, "prepare the protocol into a new --out, or restore the file",
                            "a protocol rule")


def write_protocol_rule(dataset_root: str | os.PathLike, protocol: str, rule: dict[str, Any]) -> None:
    from talkface.utils import atomic

    atomic.write_json(protocol_rule_path(dataset_root, protocol), rule)
