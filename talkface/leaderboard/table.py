"""The leaderboard as data: columns (metrics with direction, unit, variant), rows (methods), cells
(mean and 95% interval over clips), the best and second best per column, and the paired test of the
best two. The renderers in :mod:`talkface.leaderboard.render` only format this.

Rules (stated once here and in docs/leaderboard.md):

- a cell is the mean over the clips with a finite value and the percentile bootstrap interval of
  that mean (the results store's :func:`~talkface.store.results.bootstrap_ci`: 2000 resamples, seed 0);
- direction comes from the metric definition written with the rows (``higher_is_better``), else from
  the metric class; ``None`` means "closer to real": the target is the mean of the real videos' own
  values (``details.reference_value``), else the ``ground-truth`` method's mean;
- unranked methods (default ``ground-truth``, the codec's floor) are shown and never marked;
- the best ranked method is marked only when its interval does not overlap the second best's (for
  "closer to real", the intervals of the distance to the target); otherwise the column has no winner;
- the paired test compares the best two ranked methods on the clips both have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from talkface.leaderboard import protocol as protocol_guard
from talkface.leaderboard.load import LeaderboardError, MethodResults, MetricSamples
from talkface.leaderboard.published import PublishedResult
from talkface.leaderboard.stats import PairedTest, paired_bootstrap, wilcoxon_signed_rank

DEFAULT_UNRANKED = ("ground-truth",)
STATIC_BASELINE = "static-frame"
REAL_ROW = "real data (reference clips)"
TESTS = ("wilcoxon", "bootstrap")

#: Column order for known metrics; others follow alphabetically.
METRIC_ORDER = (
    "lmd_mouth",
    "lmd_face",
    "psnr",
    "ssim",
    "cpbd",
    "lpips",
    "identity_arcface",
    "identity_dlib",
    "lse_d",
    "lse_c",
    "blink_rate",
    "blink_duration",
    "blink_interval",
)
LABELS = {
    "lmd_mouth": "LMD mouth",
    "lmd_face": "LMD face",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "cpbd": "CPBD",
    "lpips": "LPIPS",
    "identity_arcface": "ID ArcFace",
    "identity_dlib": "ID dlib",
    "lse_d": "LSE-D",
    "lse_c": "LSE-C",
    "blink_rate": "Blink rate",
    "blink_duration": "Blink duration",
    "blink_interval": "Blink interval",
}
UNITS = {
    "lmd_mouth": "px",
    "lmd_face": "px",
    "psnr": "dB",
    "blink_rate": "/min",
    "blink_duration": "s",
    "blink_interval": "s",
}
DECIMALS = {
    "lmd_mouth": 2,
    "lmd_face": 2,
    "psnr": 2,
    "ssim": 3,
    "cpbd": 3,
    "lpips": 3,
    "identity_arcface": 3,
    "identity_dlib": 3,
    "lse_d": 2,
    "lse_c": 2,
    "blink_rate": 1,
    "blink_duration": 2,
    "blink_interval": 2,
}


@dataclass
class Cell:
    """One method's value in one column."""

    mean: float
    low: float
    high: float
    n: int
    n_failed: int = 0
    mark: str = ""  # "best", "second" or ""

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


@dataclass
class Column:
    metric: str
    variant: str
    direction: str  # "higher", "lower", "closer"
    unit: str
    label: str
    decimals: int
    definition: dict[str, Any]
    target: float | None = None  # "closer": the real data's mean
    target_source: str = ""  # "real" or "ground-truth"
    ranking: list[str] = field(default_factory=list)  # ranked methods, best first
    winner: str | None = None
    second: str | None = None
    no_winner: str | None = None  # why the column marks no winner
    test: PairedTest | None = None
    test_pair: tuple[str, str] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.metric, self.variant)

    @property
    def name(self) -> str:
        return f"{self.metric}:{self.variant}"

    @property
    def arrow(self) -> str:
        return {"higher": "↑", "lower": "↓", "closer": "→ real"}[self.direction]

    @property
    def direction_text(self) -> str:
        return {
            "higher": "higher is better",
            "lower": "lower is better",
            "closer": "closer to the real data is better",
        }[self.direction]

    def fmt(self, v: float) -> str:
        return "–" if not math.isfinite(v) else f"{v:.{self.decimals}f}"


@dataclass
class Row:
    method: str
    kind: str  # "measured", "unranked", "real"
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row]
    caption: str
    notes: list[str]
    mean_only: bool = False
    test_kind: str = "wilcoxon"
    unranked: tuple[str, ...] = DEFAULT_UNRANKED
    published: list[PublishedResult] = field(default_factory=list)
    published_dataset: str | None = None

    def row(self, method: str) -> Row:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(method)


def _direction(samples: Sequence[MetricSamples], metric: str) -> str:
    values = {s.definition.get("higher_is_better", "missing") for s in samples}
    values.discard("missing")
    if len(values) > 1:
        raise LeaderboardError(f"{metric}: rows disagree on higher_is_better ({values})")
    if values:
        hib = values.pop()
    else:
        from talkface.evaluate.metrics.base import get_metric_class

        hib = get_metric_class(metric).higher_is_better
    return "closer" if hib is None else ("higher" if hib else "lower")


def _decimals(metric: str, values: Sequence[float]) -> int:
    if metric in DECIMALS:
        return DECIMALS[metric]
    finite = [abs(v) for v in values if math.isfinite(v)]
    top = max(finite, default=0.0)
    return 1 if top >= 100 else 2 if top >= 1 else 3


def _cell(values: np.ndarray, n_failed: int = 0) -> Cell:
    from talkface.store.results import bootstrap_ci

    values = values[np.isfinite(values)]
    mean = float(values.mean()) if values.size else math.nan
    lo, hi = bootstrap_ci(values)
    return Cell(mean=mean, low=lo, high=hi, n=int(values.size), n_failed=n_failed)


def _distance_interval(cell: Cell, target: float) -> tuple[float, float]:
    lo, hi = cell.low - target, cell.high - target
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def _score(col: Column, cell: Cell) -> float:
    if col.direction == "higher":
        return -cell.mean
    if col.direction == "lower":
        return cell.mean
    return abs(cell.mean - col.target) if col.target is not None else math.nan


def _interval(col: Column, cell: Cell) -> tuple[float, float]:
    if col.direction == "closer":
        assert col.target is not None
        return _distance_interval(cell, col.target)
    return cell.low, cell.high


def parse_metric_filter(spec: str | Sequence[str] | None) -> list[str]:
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else [x for s in spec for x in s.split(",")]
    return [s.strip() for s in items if s.strip()]


def select_columns(
    available: Sequence[tuple[str, str]], wanted: Sequence[str]
) -> list[tuple[str, str]]:
    """Columns in display order; ``wanted`` (``name`` or ``name:variant``) keeps the user's order."""
    if not wanted:
        rank = {m: i for i, m in enumerate(METRIC_ORDER)}
        return sorted(available, key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1]))
    out: list[tuple[str, str]] = []
    for w in wanted:
        name, _, variant = w.partition(":")
        hits = [k for k in available if k[0] == name and (not variant or k[1] == variant)]
        if not hits:
            known = ", ".join(f"{m}:{v}" for m, v in available)
            raise LeaderboardError(f"--metrics {w!r}: no such column in these results; they hold {known}")
        out += [h for h in hits if h not in out]
    return out


def build_leaderboard(
    methods: Sequence[MethodResults],
    metrics: str | Sequence[str] | None = None,
    allow_mixed: bool = False,
    mean_only: bool = False,
    unranked: Sequence[str] = DEFAULT_UNRANKED,
    test: str = "wilcoxon",
    published: Sequence[PublishedResult] = (),
    published_dataset: str | None = None,
) -> Leaderboard:
    """The whole table from loaded results (see the module docstring for the rules)."""
    if test not in TESTS:
        raise LeaderboardError(f"--test {test!r}: choose one of {', '.join(TESTS)}")
    if not methods:
        raise LeaderboardError("no methods to tabulate")
    available = sorted({k for m in methods for k in m.metrics})
    keys = select_columns(available, parse_metric_filter(metrics))
    by_col = {k: {m.name: m.metrics[k] for m in methods if k in m.metrics} for k in keys}
    notes = protocol_guard.check(methods, by_col, allow_mixed=allow_mixed)
    unranked = tuple(unranked)
    rows = [
        Row(m.name, "unranked" if m.name in unranked else "measured")
        for m in sorted(methods, key=lambda m: (m.name not in unranked, m.name))
    ]
    row_by = {r.method: r for r in rows}
    columns: list[Column] = []
    real_row = Row(REAL_ROW, "real")
    for key in keys:
        samples = by_col[key]
        metric, variant = key
        definition = next(iter(samples.values())).definition
        cells = {name: _cell(s.array(), len(s.failures)) for name, s in samples.items()}
        col = Column(
            metric=metric,
            variant=variant,
            direction=_direction(list(samples.values()), metric),
            unit=UNITS.get(metric, ""),
            label=LABELS.get(metric, metric),
            decimals=_decimals(metric, [c.mean for c in cells.values()]),
            definition=definition,
        )
        for name, cell in cells.items():
            row_by[name].cells[key] = cell
        if col.direction == "closer":
            refs: dict[str, float] = {}
            for s in samples.values():
                for clip, v in s.reference_values.items():
                    refs.setdefault(clip, v)
            if refs:
                real = _cell(np.array([refs[c] for c in sorted(refs)], dtype=np.float64))
                col.target, col.target_source = real.mean, "real"
                real_row.cells[key] = real
            elif "ground-truth" in cells and math.isfinite(cells["ground-truth"].mean):
                col.target, col.target_source = cells["ground-truth"].mean, "ground-truth"
        _rank(col, cells, samples, unranked, test)
        columns.append(col)
    if real_row.cells:
        # the real data sits beside the ground-truth row (after the unranked rows)
        at = sum(1 for r in rows if r.kind == "unranked")
        rows.insert(at, real_row)
    notes += _notes(columns, by_col, unranked, cells_of=row_by)
    return Leaderboard(
        columns=columns,
        rows=rows,
        caption=protocol_guard.caption(methods),
        notes=notes,
        mean_only=mean_only,
        test_kind=test,
        unranked=unranked,
        published=list(published),
        published_dataset=published_dataset,
    )


def _rank(
    col: Column,
    cells: dict[str, Cell],
    samples: dict[str, MetricSamples],
    unranked: tuple[str, ...],
    test: str,
) -> None:
    if col.direction == "closer" and col.target is None:
        col.no_winner = "no real value to compare with (no reference values and no ground-truth row)"
        return
    ranked = [n for n, c in cells.items() if n not in unranked and math.isfinite(c.mean)]
    ranked.sort(key=lambda n: (_score(col, cells[n]), n))
    col.ranking = ranked
    if len(ranked) < 2:
        col.no_winner = "fewer than two ranked methods"
        return
    best, second = ranked[0], ranked[1]
    col.test_pair = (best, second)
    col.test = _paired_test(col, samples[best], samples[second], test)
    lo1, hi1 = _interval(col, cells[best])
    lo2, hi2 = _interval(col, cells[second])
    if not all(math.isfinite(x) for x in (lo1, hi1, lo2, hi2)):
        col.no_winner = "interval not available (fewer than two clips)"
    elif lo1 <= hi2 and lo2 <= hi1:
        col.no_winner = f"the 95% intervals of {best} and {second} overlap"
    else:
        col.winner, col.second = best, second
        cells[best].mark, cells[second].mark = "best", "second"


def _paired_test(col: Column, a: MetricSamples, b: MetricSamples, test: str) -> PairedTest:
    clips = sorted(set(a.values) & set(b.values))
    x, y = a.array(clips), b.array(clips)
    if col.direction == "closer":
        assert col.target is not None
        refs = {**b.reference_values, **a.reference_values}
        r = np.array([refs.get(c, col.target) for c in clips], dtype=np.float64)
        if test == "wilcoxon":
            return wilcoxon_signed_rank(np.abs(x - r), np.abs(y - r))

        def dist(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return np.abs(v.mean(axis=-1) - r[idx].mean(axis=-1))

        return paired_bootstrap(x, y, statistic=dist)
    if test == "wilcoxon":
        return wilcoxon_signed_rank(x, y)
    return paired_bootstrap(x, y)


def _notes(
    columns: Sequence[Column],
    by_col: dict[tuple[str, str], dict[str, MetricSamples]],
    unranked: tuple[str, ...],
    cells_of: dict[str, Row],
) -> list[str]:
    notes: list[str] = []
    for col in columns:
        samples = by_col[col.key]
        if col.direction == "closer" and col.target_source == "ground-truth":
            notes.append(
                f"{col.name}: no reference values recorded; the ground-truth method's mean is the target."
            )
        for name, s in sorted(samples.items()):
            if s.failures:
                notes.append(
                    f"{col.name}: {name} failed on {len(s.failures)} clip(s); "
                    f"its mean is over {len(s.values)}."
                )
        clip_sets = {name: frozenset(s.values) for name, s in samples.items() if name not in unranked}
        if len(set(clip_sets.values())) > 1:
            counts = ", ".join(f"{n} {len(c)}" for n, c in sorted(clip_sets.items()))
            notes.append(f"{col.name}: methods have values on different clips ({counts} clips).")
    flagged = {}
    for samples in by_col.values():
        for name, s in samples.items():
            flagged[name] = max(flagged.get(name, 0), s.flagged)
    for name, n in sorted(flagged.items()):
        if n:
            notes.append(f"{name}: {n} clip(s) flagged by evaluate (trimmed, resized or reference audio).")
    if STATIC_BASELINE in cells_of:
        static = cells_of[STATIC_BASELINE]
        for row in cells_of.values():
            if row.kind != "measured" or row.method == STATIC_BASELINE:
                continue
            worse = []
            for col in columns:
                a, s = row.cells.get(col.key), static.cells.get(col.key)
                if a is None or s is None or (col.direction == "closer" and col.target is None):
                    continue
                if not (math.isfinite(a.mean) and math.isfinite(s.mean)):
                    continue  # e.g. blink duration of a method that never blinks: not comparable
                better = _score(col, a) < _score(col, s)
                lo1, hi1 = _interval(col, a)
                lo2, hi2 = _interval(col, s)
                separated = math.isfinite(lo1 + hi1 + lo2 + hi2) and (hi1 < lo2 or hi2 < lo1)
                if not (better and separated):
                    unique = sum(c.metric == col.metric for c in columns) == 1
                    worse.append(col.metric if unique else col.name)
            if worse:
                notes.append(
                    f"{row.method} does not beat {STATIC_BASELINE} (worse, or 95% intervals overlap) on: "
                    f"{', '.join(worse)}."
                )
    return notes
