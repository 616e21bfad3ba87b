"""Published numbers: cited from papers, never measured here, never ranked against measured rows.

The data file is ``talkface/data/published_results.csv`` (package data), one row per number:

``method, paper, year, venue, dataset, split, metric, variant, talkface_metric, higher_is_better,
value, table, source_url, source_kind, note``

``metric`` and ``variant`` are the paper's own name and definition; ``talkface_metric`` names the
talkface metric it corresponds to in spirit (empty when there is none). ``table`` is where the paper
prints it; ``source_url`` is the text the number was copied from and ``source_kind`` says whether
that text is the paper itself (``paper``) or a transcription of it (``secondary``). A number nobody
could source from text they read is not in the file. See docs/leaderboard.md for each row's source.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, fields
from importlib import resources

from talkface.leaderboard.load import LeaderboardError

PUBLISHED_FILE = "published_results.csv"


@dataclass(frozen=True)
class PublishedResult:
    """One cited number: a row of the published-results file."""

    method: str
    paper: str
    year: int
    venue: str
    dataset: str
    split: str
    metric: str
    variant: str
    talkface_metric: str
    higher_is_better: bool | None
    value: float
    table: str
    source_url: str
    source_kind: str
    note: str

    @property
    def citation(self) -> str:
        venue = self.venue if str(self.year) in self.venue else f"{self.venue} {self.year}"
        return f"{self.paper} ({venue}), {self.table}"


#: The file's columns: the fields of :class:`PublishedResult`, in order.
COLUMNS = tuple(f.name for f in fields(PublishedResult))
#: Dataset names accepted by ``--include-published`` (the file's ``dataset`` column uses the same keys).
DATASETS = ("grid", "tcd-timit", "lrs2")
SOURCE_KINDS = ("paper", "secondary")


def _bool(text: str) -> bool | None:
    t = text.strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    return None


def parse_published(text: str, origin: str = PUBLISHED_FILE) -> list[PublishedResult]:
    """Rows of a published-results CSV, checked: every column present, numbers finite, known dataset."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LeaderboardError(f"{origin}: missing column(s) {missing}; expected {list(COLUMNS)}")
    rows = []
    for i, r in enumerate(reader, start=2):
        try:
            value = float(r["value"])
            year = int(r["year"])
        except ValueError as exc:
            raise LeaderboardError(f"{origin} line {i}: {exc}") from None
        if not math.isfinite(value):
            raise LeaderboardError(f"{origin} line {i}: value must be a finite number")
        if r["dataset"] not in DATASETS:
            raise LeaderboardError(f"{origin} line {i}: dataset {r['dataset']!r} is not one of {DATASETS}")
        if r["source_kind"] not in SOURCE_KINDS:
            raise LeaderboardError(f"{origin} line {i}: source_kind must be one of {SOURCE_KINDS}")
        if not r["source_url"] or not r["table"]:
            raise LeaderboardError(f"{origin} line {i}: every published number needs its table and source")
        text_fields = {c: r[c] for c in COLUMNS}
        rows.append(PublishedResult(**{**text_fields, "year": year, "value": value,
                                       "higher_is_better": _bool(r["higher_is_better"])}))
    return rows


def load_published(dataset: str | None = None) -> list[PublishedResult]:
    """The packaged published numbers, optionally only one dataset's (``grid``, ``tcd-timit``, ``lrs2``)."""
    if dataset is not None and dataset not in DATASETS:
        raise LeaderboardError(f"--include-published {dataset!r}: choose one of {', '.join(DATASETS)}")
    text = resources.files("talkface").joinpath("data", PUBLISHED_FILE).read_text(encoding="utf-8")
    rows = parse_published(text)
    return [r for r in rows if dataset is None or r.dataset == dataset]
