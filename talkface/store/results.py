"""The results store of ``talkface evaluate``: ``results.parquet`` and ``summary.json``.

``results.parquet`` has one row per (method, clip_id, metric, variant): the clip's value, the
per-frame values (a list column), the error when it could not be computed, details (JSON) and the
metric's full definition (JSON), so any single row says how it was made. Writing a method replaces
that method's rows and keeps every other method's. ``summary.json`` is rebuilt from the parquet and
the per-method run records (``runs/<method>.json``: pairing, flags, provenance) after every run.
Intervals are percentile bootstrap intervals over clips, seeded, so they are reproducible.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from talkface import __version__
from talkface.utils import atomic

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


class ResultsStore:
    """``<root>/results.parquet``, ``<root>/summary.json`` and ``<root>/runs/<method>.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def parquet_path(self) -> Path:
        return self.root / "results.parquet"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def run_path(self, method: str) -> Path:
        return self.root / "runs" / f"{method}.json"

    def read(self) -> pd.DataFrame:
        if not self.parquet_path.exists():
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return pd.read_parquet(self.parquet_path)

    def replace_method(
        self, method: str, rows: list[dict[str, Any]], run_record: dict[str, Any]
    ) -> pd.DataFrame:
        """Replace ``method``'s rows with ``rows`` (other methods untouched), then rebuild the summary."""
        new = pd.DataFrame([_normalise_row(r) for r in rows], columns=RESULT_COLUMNS)
        old = self.read()
        old = old[old["method"] != method]
        df = pd.concat([old, new], ignore_index=True) if len(old) else new
        df = df.sort_values(["method", "metric", "variant", "clip_id"], kind="stable").reset_index(drop=True)
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(self.parquet_path) as tmp:
            df.to_parquet(tmp, index=False)
        atomic.write_json(self.run_path(method), run_record)
        self.write_summary(df)
        return df

    def write_summary(self, df: pd.DataFrame | None = None) -> dict[str, Any]:
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
            run_path = self.run_path(str(method))
            run = json.loads(run_path.read_text()) if run_path.exists() else {}
            metrics: dict[str, Any] = {}
            for (metric, variant), g in mdf.groupby(["metric", "variant"], sort=True):
                metrics[f"{metric}:{variant}"] = summarise_metric(g)
            summary["methods"][str(method)] = {"run": run, "metrics": metrics}
        atomic.write_json(self.summary_path, summary)
        return summary


def summarise_metric(g: pd.DataFrame) -> dict[str, Any]:
    """Mean, std, bootstrap CI over clips with a finite value; failures counted separately."""
    values = g["value"].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    ok = values[finite]
    lo, hi = bootstrap_ci(ok)
    errors = g.loc[g["error"].notna() & (g["error"] != ""), ["clip_id", "error"]]
    out: dict[str, Any] = {
        "metric": str(g["metric"].iloc[0]),
        "variant": str(g["variant"].iloc[0]),
        "mean": float(ok.mean()) if ok.size else math.nan,
        "std": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
        "ci95": [lo, hi],
        "n_clips": int(ok.size),
        "n_failed": int(len(errors)),
        "n_nan_without_error": int((~finite).sum() - len(errors)),
        "failures": {str(c): str(e) for c, e in errors.itertuples(index=False)},
        "definition": json.loads(g["definition"].iloc[0]),
    }
    refs = [json.loads(d).get("reference_value") for d in g["details"]]
    refs_arr = np.array([r for r in refs if r is not None], dtype=np.float64)
    refs_arr = refs_arr[np.isfinite(refs_arr)]
    if refs_arr.size:
        out["reference_mean"] = float(refs_arr.mean())
    return _json_safe(out)


def _normalise_row(row: dict[str, Any]) -> dict[str, Any]:
    per_frame = row.get("per_frame")
    return {
        "method": str(row["method"]),
        "clip_id": str(row["clip_id"]),
        "metric": str(row["metric"]),
        "variant": str(row["variant"]),
        "value": float(row["value"]) if row.get("value") is not None else math.nan,
        "per_frame": None if per_frame is None else [float(v) for v in np.asarray(per_frame).ravel()],
        "error": row.get("error"),
        "flags": ",".join(row.get("flags") or []),
        "details": json.dumps(_json_safe(row.get("details") or {}), sort_keys=True),
        "definition": json.dumps(_json_safe(row.get("definition") or {}), sort_keys=True),
    }


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
    return obj
