"""What ``make demo`` prints, kept: one full ``talkface demo`` run, its table written to a results file.

    python benchmarks/bench_demo.py --out benchmarks/results    # about 10 minutes on 2 idle cores

Runs ``talkface demo --out <temporary folder>`` (the full profile ``make demo`` runs: the 12 built-in
GRID s1 clips, a few minutes of training, the model shipped with talkface when the install carries
one, the five baselines, every weight-free metric and ``identity_dlib``) in a fresh process, then
writes ``demo.json`` (every leaderboard row of ``leaderboard.csv``, the demo's split, training and
shipped-model lines, each step's seconds, machine, load before and after, date, talkface version) and
``demo.leaderboard.md`` (the table as the demo printed it). The README's "What the demo prints" is
rendered from these files by scripts/render_figures.py.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline_quality import load, machine

from talkface import __version__
from talkface.utils.atomic import write_json, write_text

KEPT_COLUMNS = ("kind", "method", "metric", "variant", "unit", "direction", "mean", "ci_low", "ci_high",
                "n_clips", "n_failed", "rank", "mark", "column_winner", "no_winner_reason")


def _number(text: str) -> float | str | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def summary_line(summary: str, prefix: str) -> str | None:
    """The SUMMARY.md line that starts with ``prefix`` (without it and its final full stop)."""
    for line in summary.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip().rstrip(".")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--quick", action="store_true", help="talkface demo --quick (the CI profile), not kept "
                    "under the name the README reads")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="talkface_bench_demo_") as tmp:
        folder = Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "talkface.cli", "demo", "--out", str(folder)]
        if args.quick:
            cmd.append("--quick")
        before, started = load(), time.time()
        proc = subprocess.run(cmd, env={**os.environ, "COLUMNS": "160"}, capture_output=True, text=True)
        elapsed, after = time.time() - started, load()
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:] + proc.stdout[-2000:])
            print(f"talkface demo failed (status {proc.returncode})", file=sys.stderr)
            return 1
        board = folder / "leaderboard"
        with open(board / "leaderboard.csv", newline="") as fh:
            rows = [{k: (_number(r[k]) if k in ("mean", "ci_low", "ci_high", "n_clips", "n_failed", "rank")
                         else r[k]) for k in KEPT_COLUMNS} for r in csv.DictReader(fh)]
        summary = (folder / "SUMMARY.md").read_text()
        state = json.loads((folder / "demo.json").read_text())
        table = (board / "leaderboard.md").read_text()
    name = "demo.quick" if args.quick else "demo"
    result = {
        "benchmark": "talkface demo" + (" --quick" if args.quick else ""),
        "command": " ".join(["talkface", *cmd[3:]]).replace(str(folder), "demo-output"),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "talkface_version": __version__,
        "machine": machine(),
        "load_average_before": before,
        "load_average_after": after,
        "elapsed_s": round(elapsed, 1),
        "steps_s": {k: v.get("seconds") for k, v in state.get("steps", {}).items()},
        "split": summary_line(summary, "Split:"),
        "training": summary_line(summary, "Training:"),
        "shipped": summary_line(summary, "Shipped:"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{name}.json", result)
    write_text(args.out / f"{name}.leaderboard.md", table)
    print(f"wrote {args.out / name}.json and .leaderboard.md ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
