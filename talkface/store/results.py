"""The results contract: ``results.parquet``, ``summary.json`` and ``runs/<method>.json``.

This module is the only reader and writer of these files (``talkface evaluate`` writes them through
:meth:`ResultsStore.replace_method`; the leaderboard, the study and the demo read them through the
read helpers below).

- ``results.parquet``: one :class:`ResultRow` per (method, clip_id, metric, variant): the clip's value,
  the per-frame values (a list column), the error when it could not be computed, flags, details (JSON)
  and the metric's full definition (JSON), so any single row says how it was made. Writing a method
  replaces that method's rows and keeps every other method's.
- ``runs/<method>.json``: the run record of the method's last evaluation (pairing, flags, options,
  provenance) with its :class:`Protocol` under the key ``"protocol"``, ``"talkface_version"`` and the
  method's name under ``"method"``. The file's name is the method's file stem
  (:func:`talkface.utils.names.file_stem`: the name itself when plain, else a slug and a hash), so a
  name such as ``../../x`` or ``ours é/中文`` never leaves ``runs/``; the name inside the file is the
  one every table shows, and a file whose recorded name differs is another method's (refused).
  Tables compare only rows whose protocols are equal (:meth:`Protocol.differences`).
- ``summary.json``: rebuilt from the parquet and the run records after every write: per method its
  run record, the clips that were trimmed and by how much, and per ``metric:variant`` a
  :class:`MetricSummary` (mean, std, 95% interval, counts, failures, definition).

Intervals are percentile bootstrap intervals over clips, seeded, so they are reproducible.

A damaged file (truncated, empty, not what it should be) is a :class:`ResultsError`: one sentence
naming the file and what to do, never a reader's traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from talkface import __version__
from talkface.store.damage import damaged as _damaged
from talkface.store.damage import read_json_object, read_parquet_table
from talkface.utils import atomic
from talkface.utils.lock import FolderLocked, WriterLock
from talkface.utils.names import check_name, file_name
from talkface.utils.paths import PathUnder

if TYPE_CHECKING:  # pandas is imported where a table is built: 0.25 s a worker process spared
    import pandas as pd

RESULT_COLUMNS = [
    "method",
    "clip_id",
    "metric",
    "variant",
    "value",
    "per_frame",
    "error",
    "flags",
    "details",
    "definition",
]
N_BOOT = 2000
BOOT_SEED = 0
CI_LEVEL = 0.95
#: How long a writer waits for another writer of the same results folder (seconds; a write takes ~1 s).
LOCK_WAIT_S = 120.0

_TRIM_FLAG = re.compile(r"^trimmed:(\d+)vs(\d+)$")


class ResultsError(ValueError):
    """A results folder, method or record that is absent or unreadable; ``str()`` is one sentence."""


# -- the records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """What a method's numbers were measured against; two methods rank together only when equal.

    ``reference_id`` is a short hash of the reference set (the sorted ids of the scored reference
    clips and the dataset's information), so the same set read from another path is the same protocol.
    """

    dataset: str  # the corpus, e.g. "grid"
    protocol: str | None  # the split protocol, e.g. "speaker-independent"
    part: str | None  # train | val | test, or None for clips from several parts
    crop_size: int
    reference: str  # the prepared dataset's resolved path (informative; not compared)
    reference_id: str
    #: where each clip's identity image came from (talkface.store.identity_source): other-clip |
    #: same-clip; None in results written before the identity protocol (the clip's own frame)
    identity_from: str | None = None

    #: The fields that must be equal for two methods to be compared.
    COMPARED = ("dataset", "protocol", "part", "crop_size", "reference_id", "identity_from")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("dataset", "protocol", "part", "crop_size", "reference",
                                              "reference_id", "identity_from")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Protocol:
        return cls(
            dataset=str(d["dataset"]),
            protocol=d.get("protocol"),
            part=d.get("part"),
            crop_size=int(d["crop_size"]),
            reference=str(d.get("reference", "")),
            reference_id=str(d["reference_id"]),
            identity_from=d.get("identity_from"),
        )

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in self.COMPARED)

    def differences(self, other: Protocol) -> list[str]:
        """``["part: 'test' vs 'val'", ...]``: the compared fields that differ (empty when comparable)."""
        return [
            f"{k}: {getattr(self, k)!r} vs {getattr(other, k)!r}"
            for k in self.COMPARED
            if getattr(self, k) != getattr(other, k)
        ]


def reference_id(clip_ids: Iterable[str], dataset_info: Mapping[str, Any]) -> str:
    """Short SHA-256 of the sorted clip ids and the dataset information (canonical JSON)."""
    payload = json.dumps(
        {"clips": sorted(str(c) for c in clip_ids), "dataset": _json_safe(dict(dataset_info))},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class ResultRow:
    """One (method, clip, metric, variant) value; ``error`` says why ``value`` is NaN."""

    method: str
    clip_id: str
    metric: str
    variant: str
    value: float = math.nan
    per_frame: Sequence[float] | np.ndarray | None = None
    error: str | None = None
    flags: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.metric}:{self.variant}"

    def to_record(self) -> dict[str, Any]:
        """The parquet row: numbers as floats, flags comma-joined, details and definition as JSON."""
        per_frame = self.per_frame
        return {
            "method": str(self.method),
            "clip_id": str(self.clip_id),
            "metric": str(self.metric),
            "variant": str(self.variant),
            "value": math.nan if self.value is None else float(self.value),
            "per_frame": None if per_frame is None else [float(v) for v in np.asarray(per_frame).ravel()],
            "error": self.error or None,
            "flags": ",".join(self.flags or []),
            "details": json.dumps(_json_safe(self.details or {}), sort_keys=True),
            "definition": json.dumps(_json_safe(self.definition or {}), sort_keys=True),
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> ResultRow:
        per_frame = rec.get("per_frame")
        error = rec.get("error")
        return cls(
            method=str(rec["method"]),
            clip_id=str(rec["clip_id"]),
            metric=str(rec["metric"]),
            variant=str(rec["variant"]),
            value=float(rec["value"]),
            per_frame=None if per_frame is None else np.asarray(per_frame, dtype=np.float64),
            error=error if isinstance(error, str) and error else None,
            flags=[f for f in str(rec.get("flags") or "").split(",") if f],
            details=json.loads(rec.get("details") or "{}"),
            definition=json.loads(rec.get("definition") or "{}"),
        )


@dataclass(frozen=True)
class MetricSummary:
    """One method's statistics for one ``metric:variant`` over its clips (NaN where undefined)."""

    metric: str
    variant: str
    mean: float
    std: float
    ci95: tuple[float, float]
    n_clips: int  # clips with a finite value
    n_failed: int  # clips with an error
    failures: dict[str, str] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)
    n_nan_without_error: int = 0
    reference_mean: float | None = None  # the real data's value, for "match the reference" metrics

    @property
    def key(self) -> str:
        return f"{self.metric}:{self.variant}"

    @property
    def higher_is_better(self) -> bool | None:
        return self.definition.get("higher_is_better")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        if self.reference_mean is None:
            del d["reference_mean"]
        return _json_safe(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricSummary:
        lo, hi = d.get("ci95") or (None, None)
        return cls(
            metric=str(d["metric"]),
            variant=str(d["variant"]),
            mean=_float(d.get("mean")),
            std=_float(d.get("std")),
            ci95=(_float(lo), _float(hi)),
            n_clips=int(d.get("n_clips", 0)),
            n_failed=int(d.get("n_failed", 0)),
            failures=dict(d.get("failures") or {}),
            definition=dict(d.get("definition") or {}),
            n_nan_without_error=int(d.get("n_nan_without_error", 0)),
            reference_mean=None if d.get("reference_mean") is None else float(d["reference_mean"]),
        )


def trim_flag(n_generated: int, n_reference: int) -> str:
    """The flag a trimmed clip's rows carry (parsed back by :func:`parse_trim_flag`)."""
    return f"trimmed:{n_generated}vs{n_reference}"


def parse_trim_flag(flag: str) -> tuple[int, int] | None:
    m = _TRIM_FLAG.match(flag)
    return (int(m.group(1)), int(m.group(2))) if m else None


# -- the store -------------------------------------------------------------------------------------


class ResultsStore:
    """``<root>/results.parquet``, ``<root>/summary.json`` and ``<root>/runs/<method>.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def open(cls, root: str | Path) -> ResultsStore:
        """A store that must already hold results (a :class:`ResultsError` naming the folder if not)."""
        store = cls(root)
        if not store.parquet_path.is_file():
            raise ResultsError(
                f"{store.root} holds no results ({store.parquet_path.name} not found): "
                "run `talkface evaluate --out` into it first"
            )
        return store

    parquet_path = PathUnder("root", "results.parquet")
    summary_path = PathUnder("root", "summary.json")

    def run_path(self, method: str) -> Path:
        """``runs/<file stem of method>.json`` (:func:`talkface.utils.names.file_stem`); a
        :class:`~talkface.utils.names.NameRefused` for a name that cannot be used."""
        return self.root / "runs" / file_name(method, ".json", "method name")

    def _existing_run_path(self, method: str) -> Path | None:
        """The method's run record file: its file stem's, else (results written before the names rule)
        ``runs/<method>.json`` when that is a plain file name in ``runs/``; None when neither exists."""
        path = self.root / "runs" / file_name(method, ".json", "method name", check=False)
        if path.is_file():
            return path
        if not any(c in method for c in "/\\\0") and method not in (".", ".."):
            legacy = self.root / "runs" / f"{method}.json"
            if legacy.is_file():
                return legacy
        return None

    def check_method_name(self, method: str) -> str:
        """``method`` when results can be written under it (a usable name whose run record file is free
        or its own), else a :class:`ResultsError` (or ``NameRefused``): call before a long run."""
        check_name(method, "method name")
        path = self.run_path(method)
        if path.is_file():
            try:
                recorded = json.loads(path.read_text(encoding="utf-8")).get("method")
            except (OSError, ValueError, AttributeError):
                recorded = None  # damaged: the method's own file, rewritten by this run
            if isinstance(recorded, str) and recorded != method:
                raise ResultsError(
                    f"{path} holds method {recorded!r}, whose file name is the same as {method!r}'s on this "
                    "file system: give this method another name (--method)")
        return method

    # reading -------------------------------------------------------------------------------------
    def read(self, method: str | None = None) -> pd.DataFrame:
        """The rows (all methods, or one), columns :data:`RESULT_COLUMNS`; empty when none. A damaged
        ``results.parquet`` is a :class:`ResultsError` naming it."""
        path = self.parquet_path
        if not path.exists():
            import pandas as pd

            return pd.DataFrame(columns=RESULT_COLUMNS)
        todo = (f"restore it from a copy, or delete it and run `talkface evaluate ... --out {self.root}` "
                "again for each method")
        df = read_parquet_table(path, ResultsError, todo, "a talkface results file", RESULT_COLUMNS)
        if method is not None:
            df = df[df["method"] == method].reset_index(drop=True)
        return df

    def rows(self, method: str | None = None) -> list[ResultRow]:
        return [ResultRow.from_record(r) for r in self.read(method).to_dict("records")]

    def methods(self) -> list[str]:
        return sorted(str(m) for m in self.read()["method"].unique())

    def values(self, method: str, metric: str, variant: str | None = None) -> pd.Series:
        """Per-clip values of one method's metric (NaN where it failed), indexed by clip id.

        ``variant`` may be omitted when the method has one variant of ``metric``.
        """
        df = self.read(method)
        df = df[df["metric"] == metric]
        variants = sorted(df["variant"].unique())
        if variant is None:
            if len(variants) != 1:
                raise ResultsError(
                    f"method {method!r} has {len(variants)} variants of {metric!r} "
                    f"({', '.join(variants) or 'none'}): name one"
                )
            variant = variants[0]
        df = df[df["variant"] == variant]
        if df.empty:
            raise ResultsError(f"method {method!r} has no {metric}:{variant} values in {self.root}")
        import pandas as pd

        return pd.Series(df["value"].to_numpy(np.float64), index=df["clip_id"].astype(str), name=variant)

    def has_run_record(self, method: str) -> bool:
        """Whether the method has a run record file (results written as a bare parquet have none)."""
        return self._existing_run_path(method) is not None

    def run_record(self, method: str) -> dict[str, Any]:
        """``runs/<method>.json``: the run record of the method's last evaluation (a
        :class:`ResultsError` when it is missing, damaged, or another method's)."""
        path = self._existing_run_path(method)
        if path is None:
            known = ", ".join(self.methods()) or "none"
            raise ResultsError(f"no run record for method {method!r} in {self.root} (methods: {known})")
        record = self._read_run_file(path, method)
        recorded = record.get("method")
        if isinstance(recorded, str) and recorded != method:
            raise ResultsError(f"{path} holds the run record of method {recorded!r}, not {method!r}: "
                               f"run `talkface evaluate --method {_quoted(method)} --out {self.root}` again")
        return record

    def _read_run_file(self, path: Path, method: str) -> dict[str, Any]:
        todo = (f"run `talkface evaluate --method {_quoted(method)} --out {self.root}` again to rewrite it, "
                "or restore it from a copy")
        return read_json_object(path, ResultsError, todo, "a run record")

    def protocol(self, method: str) -> Protocol | None:
        """The method's :class:`Protocol`; None for results written before protocols were recorded."""
        d = self.run_record(method).get("protocol")
        return Protocol.from_dict(d) if d else None

    def summary(self) -> dict[str, Any]:
        """``summary.json`` (computed in memory, not written, when the file is absent)."""
        path = self.summary_path
        if not path.is_file():
            return self.build_summary()
        todo = (f"run `talkface evaluate ... --out {self.root}` again (it rebuilds the summary from "
                "results.parquet), or delete it")
        summary = read_json_object(path, ResultsError, todo, "a results summary")
        if not isinstance(summary.get("methods"), dict):
            raise ResultsError(f"{path} is damaged (not a results summary): {todo}")
        return summary

    def metric_summaries(self, method: str) -> dict[str, MetricSummary]:
        """``metric:variant`` -> :class:`MetricSummary` of one method."""
        methods = self.summary()["methods"]
        if method not in methods:
            known = ", ".join(sorted(methods)) or "none"
            raise ResultsError(f"no results for method {method!r} in {self.root} (methods: {known})")
        return {k: MetricSummary.from_dict(v) for k, v in methods[method]["metrics"].items()}

    # writing -------------------------------------------------------------------------------------
    def replace_method(
        self, method: str, rows: Iterable[ResultRow], run_record: dict[str, Any]
    ) -> pd.DataFrame:
        """Replace ``method``'s rows with ``rows`` (other methods untouched), then rebuild the summary.

        Concurrent writers of one folder (two methods evaluated at once) take turns, so neither loses
        the other's rows. The run record is written to ``runs/<file stem>.json`` with ``method`` set to
        the name itself.
        """
        self.check_method_name(method)
        import pandas as pd

        new = pd.DataFrame([r.to_record() for r in rows], columns=RESULT_COLUMNS)
        with self._write_lock():
            self.check_method_name(method)  # again, now that no other writer can take the file
            old = self.read()
            old = old[old["method"] != method]
            df = pd.concat([old, new], ignore_index=True) if len(old) else new
            df = df.sort_values(["method", "metric", "variant", "clip_id"], kind="stable")
            df = df.reset_index(drop=True)
            with atomic.atomic_path(self.parquet_path) as tmp:
                df.to_parquet(tmp, index=False)
            atomic.write_json(self.run_path(method), _json_safe({**run_record, "method": method}))
            self.write_summary(df)
        return df

    def write_summary(self, df: pd.DataFrame | None = None) -> dict[str, Any]:
        summary = self.build_summary(df)
        atomic.write_json(self.summary_path, summary)
        return summary

    def build_summary(self, df: pd.DataFrame | None = None) -> dict[str, Any]:
        df = self.read() if df is None else df
        summary: dict[str, Any] = {
            "talkface_version": __version__,
            "bootstrap": {
                "n_boot": N_BOOT,
                "seed": BOOT_SEED,
                "level": CI_LEVEL,
                "kind": "percentile, over clips",
            },
            "methods": {},
        }
        for method, mdf in df.groupby("method", sort=True):
            run = self.run_record(str(method)) if self.has_run_record(str(method)) else {}
            metrics = {
                f"{metric}:{variant}": summarise_metric(g).to_dict()
                for (metric, variant), g in mdf.groupby(["metric", "variant"], sort=True)
            }
            summary["methods"][str(method)] = {
                "run": run,
                "trimmed": summarise_trimming(mdf),
                "metrics": metrics,
            }
        return summary

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        lock = WriterLock(self.root, "evaluate")
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                lock.acquire()
                break
            except FolderLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            yield
        finally:
            lock.release()


# -- statistics ------------------------------------------------------------------------------------


def bootstrap_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling clips); NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def summarise_metric(g: pd.DataFrame) -> MetricSummary:
    """Mean, std, bootstrap CI over clips with a finite value; failures counted separately."""
    values = g["value"].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    ok = values[finite]
    errors = g.loc[g["error"].notna() & (g["error"] != ""), ["clip_id", "error"]]
    refs = [json.loads(d).get("reference_value") for d in g["details"]]
    refs_arr = np.array([r for r in refs if r is not None], dtype=np.float64)
    refs_arr = refs_arr[np.isfinite(refs_arr)]
    return MetricSummary(
        metric=str(g["metric"].iloc[0]),
        variant=str(g["variant"].iloc[0]),
        mean=float(ok.mean()) if ok.size else math.nan,
        std=float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
        ci95=bootstrap_ci(ok),
        n_clips=int(ok.size),
        n_failed=int(len(errors)),
        failures={str(c): str(e) for c, e in errors.itertuples(index=False)},
        definition=json.loads(g["definition"].iloc[0]),
        n_nan_without_error=int((~finite).sum() - len(errors)),
        reference_mean=float(refs_arr.mean()) if refs_arr.size else None,
    )


def summarise_trimming(mdf: pd.DataFrame) -> dict[str, Any]:
    """How many of a method's clips were trimmed to their reference's length, and by how much."""
    clips: dict[str, dict[str, int]] = {}
    for clip_id, flags in mdf[["clip_id", "flags"]].drop_duplicates("clip_id").itertuples(index=False):
        for flag in str(flags or "").split(","):
            parsed = parse_trim_flag(flag)
            if parsed:
                clips[str(clip_id)] = {"generated": parsed[0], "reference": parsed[1]}
    dropped = [abs(c["generated"] - c["reference"]) for c in clips.values()]
    return {
        "n_clips": len(clips),
        "frames_dropped_total": int(sum(dropped)),
        "frames_dropped_max": int(max(dropped, default=0)),
        "clips": clips,
    }


# -- helpers ---------------------------------------------------------------------------------------


def damaged(path: Path, exc: BaseException, todo: str) -> ResultsError:
    """The one sentence for a results file that cannot be read: the file, why, and ``todo``."""
    return _damaged(ResultsError, path, exc, todo)


def _quoted(name: str) -> str:
    """``name`` as a shell word in a suggested command."""
    import shlex

    return shlex.quote(name)


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _json_safe(obj: Any) -> Any:
    """NaN/inf become None (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
