"""Read evaluation results for the leaderboard, only through :class:`talkface.store.results.ResultsStore`.

One :class:`MethodResults` per method: its run record, its protocol (dataset, split protocol, part,
crop size, reference set) and one :class:`MetricSamples` per (metric, variant) with the per-clip values,
the per-clip values of the real (reference) video where the metric records one, failures and the
metric's definition as written by ``talkface evaluate``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Fields of a run record's ``"protocol"`` that decide whether two methods can be ranked together.
PROTOCOL_FIELDS: tuple[tuple[str, str], ...] = (
    ("dataset", "dataset"),
    ("protocol", "split protocol"),
    ("part", "part"),
    ("crop_size", "crop size"),
    ("reference_set", "reference set"),
    ("identity_from", "identity image from"),
)

UNKNOWN = "unknown"


class LeaderboardError(ValueError):
    """A leaderboard cannot be built as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Protocol:
    """The evaluation protocol of one method's results. ``None`` fields were not recorded."""

    dataset: str | None = None
    protocol: str | None = None
    part: str | None = None
    crop_size: str | None = None
    reference_set: str | None = None
    identity_from: str | None = None  # other-clip | same-clip (talkface.store.identity_source)
    recorded: bool = False  # the run record had a "protocol" entry

    @classmethod
    def from_run(cls, run: dict[str, Any]) -> Protocol:
        """From a run record: its ``"protocol"`` dict when present; older records only name the
        reference folder, so every other field stays unknown."""
        proto = run.get("protocol")
        if isinstance(proto, dict):
            ref_id = proto.get("reference_id")
            ref = f"id:{ref_id}" if ref_id not in (None, "") else _path_ref(proto.get("reference"))
            return cls(
                dataset=_text(proto.get("dataset")),
                # recorded as None: a dataset without split protocols / clips from several parts
                protocol=_text(proto.get("protocol")) or "none",
                part=_text(proto.get("part")) or "several parts",
                crop_size=_crop_size(proto.get("crop_size")),
                reference_set=ref,
                # recorded before the identity protocol: generation took the clip's own frame
                identity_from=_text(proto.get("identity_from")) or "same-clip",
                recorded=True,
            )
        return cls(reference_set=_path_ref(run.get("reference")), recorded=False)

    def value(self, name: str) -> str | None:
        return getattr(self, name)

    def describe(self) -> str:
        parts = []
        for name, label in PROTOCOL_FIELDS:
            v = self.value(name)
            parts.append(f"{label} {v if v is not None else UNKNOWN}")
        return ", ".join(parts)


def _text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return str(v)


def _path_ref(v: Any) -> str | None:
    return None if v in (None, "") else f"path:{v}"


def _crop_size(v: Any) -> str | None:
    """128, "128", [128, 128], "128x128" -> "128x128" (a square side alone means a square crop)."""
    if v is None or v == "":
        return None
    if isinstance(v, (list, tuple)):
        return "x".join(str(int(x)) if isinstance(x, (int, float)) else str(x) for x in v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{int(v)}x{int(v)}"
    s = str(v).strip()
    return f"{s}x{s}" if s.isdigit() else s


@dataclass
class MetricSamples:
    """One method's values of one (metric, variant): finite per-clip values and what failed."""

    metric: str
    variant: str
    values: dict[str, float]  # clip_id -> value (finite only)
    reference_values: dict[str, float]  # clip_id -> the real video's value, where the metric records one
    failures: dict[str, str]  # clip_id -> error
    n_nan: int  # NaN values without an error (e.g. blink duration of a clip with no blink)
    definition: dict[str, Any]
    flagged: int = 0  # clips flagged trimmed/resized/reference_audio

    @property
    def key(self) -> tuple[str, str]:
        return (self.metric, self.variant)

    def array(self, clips: Sequence[str] | None = None) -> np.ndarray:
        if clips is None:
            return np.array(list(self.values.values()), dtype=np.float64)
        return np.array([self.values.get(c, math.nan) for c in clips], dtype=np.float64)


@dataclass
class MethodResults:
    """Everything the leaderboard knows about one method."""

    name: str
    source: str  # the results folder it came from (shown in error messages only)
    run: dict[str, Any]
    protocol: Protocol
    metrics: dict[tuple[str, str], MetricSamples] = field(default_factory=dict)

    @property
    def talkface_version(self) -> str | None:
        v = self.run.get("talkface_version")
        return None if v is None else str(v)


def read_run_record(store: Any, method: str) -> dict[str, Any]:
    """The method's run record through the store; {} when it has none (a bare parquet). A damaged
    one is the store's ``ResultsError`` (one sentence naming the file), never an empty record."""
    if not store.has_run_record(method):
        return {}
    return dict(store.run_record(method))


def load_results(roots: Iterable[str | Path]) -> list[MethodResults]:
    """Every method of every results folder; a method name found in two folders is an error."""
    from talkface.store.results import ResultsError, ResultsStore

    methods: dict[str, MethodResults] = {}
    roots = [Path(r) for r in roots]
    if not roots:
        raise LeaderboardError("no results folder given")
    for root in roots:
        try:
            _load_folder(ResultsStore.open(root), root, methods)
        except ResultsError as exc:  # missing or damaged: results.parquet, runs/<method>.json
            raise LeaderboardError(str(exc)) from None
    if not methods:
        raise LeaderboardError(f"no results in {', '.join(str(r) for r in roots)}")
    return [methods[k] for k in sorted(methods)]


def _load_folder(store: Any, root: Path, methods: dict[str, MethodResults]) -> None:
    """Every method of one results folder into ``methods``."""
    df = store.read()
    for name, mdf in df.groupby("method", sort=True):
        name = str(name)
        if name in methods:
            raise LeaderboardError(
                f"method {name!r} is in both {methods[name].source} and {root}; "
                "rename one (evaluate --method) or pass only one of the folders"
            )
        run = read_run_record(store, name)
        entry = MethodResults(name=name, source=str(root), run=run, protocol=Protocol.from_run(run))
        for (metric, variant), g in mdf.groupby(["metric", "variant"], sort=True):
            entry.metrics[(str(metric), str(variant))] = _samples(str(metric), str(variant), g)
        methods[name] = entry


def _samples(metric: str, variant: str, g: Any) -> MetricSamples:
    values: dict[str, float] = {}
    refs: dict[str, float] = {}
    failures: dict[str, str] = {}
    n_nan = 0
    flagged = 0
    definition: dict[str, Any] = {}
    for row in g.itertuples(index=False):
        clip = str(row.clip_id)
        err = row.error
        if isinstance(err, str) and err:
            failures[clip] = err
        value = float(row.value) if row.value is not None else math.nan
        if math.isfinite(value):
            values[clip] = value
        elif not (isinstance(err, str) and err):
            n_nan += 1
        details = _json(row.details)
        ref = details.get("reference_value")
        if isinstance(ref, (int, float)) and math.isfinite(float(ref)):
            refs[clip] = float(ref)
        if isinstance(row.flags, str) and row.flags:
            flagged += 1
        if not definition:
            definition = _json(row.definition)
    return MetricSamples(metric, variant, values, refs, failures, n_nan, definition, flagged)


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        return {}
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}
