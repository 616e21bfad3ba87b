"""Run a group of benchmarks (``benchmarks/bench_*.py --out benchmarks/results``) and collect their results.

    python benchmarks/run_all.py                   # the speed group: ``make bench``
    python benchmarks/run_all.py --group quality   # the slow quality and experiment benchmarks
    python benchmarks/run_all.py --group all       # both: ``make bench-all``
    python benchmarks/run_all.py --only evaluate prepare

The speed group measures every figure of the README's speed table (and issue 22's) in one run; each
benchmark times its figures with benchmarks/timing.py (the median of at least 3 runs, min and max kept,
the load average before and after, and whether the figure was measured under load). Each benchmark
writes its own JSON under benchmarks/results/; this script prints each benchmark's wall time and the
load average before and after it, writes them with the machine and date to
``benchmarks/results/summary.md``, then runs scripts/render_figures.py, which rewrites the README's and
docs' figures from those files (only when ``--out`` is that folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Every figure of the README's speed table and of issue 22, in the order they run.
SPEED = ["prepare", "prepare_scale", "landmarks", "deepspeech", "metrics", "evaluate", "texture_generate",
         "train_landmarks", "learned_metrics", "texture_parts", "deepspeech_lstm"]
#: The slow quality and experiment benchmarks (training runs, demos, annotations).
QUALITY = ["pipeline_quality", "unseen_identities", "render_fidelity", "unheard_voices", "demo", "baselines",
           "corpora", "identity_separation", "landmark_facts", "orientation", "blink_annotation"]
GROUPS = {"speed": SPEED, "quality": QUALITY}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (what platform gives where that is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def machine() -> str:
    python = platform.python_version()
    return f"{os.cpu_count()} cores ({cpu_model()}), {memory_gib():.0f} GiB, Python {python}"


def benchmarks(group: str, only: list[str] | None = None) -> list[Path]:
    """The scripts to run: ``only`` (names, any group) or a group's, in the group's order; "all" adds any
    bench_*.py that no group names."""
    present = {s.stem.removeprefix("bench_"): s for s in sorted(HERE.glob("bench_*.py"))}
    if only:
        unknown = [n for n in only if n not in present]
        if unknown:
            raise SystemExit(f"no benchmark named {', '.join(unknown)} (have: {', '.join(present)})")
        return [present[n] for n in only]
    names = SPEED + QUALITY + sorted(set(present) - set(SPEED) - set(QUALITY)) if group == "all" \
        else GROUPS[group]
    return [present[n] for n in names if n in present]


def _load(v: list[float]) -> str:
    return "/".join(f"{x:.2f}" for x in v)


def main() -> int:
    sys.path.insert(0, str(HERE))
    from timing import RULE, loadavg

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--group", choices=[*GROUPS, "all"], default="speed",
                        help="speed (default: the README's speed table), quality, or all")
    parser.add_argument("--only", nargs="*", help="benchmark names (bench_<name>.py) to run, any group")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scripts = benchmarks(args.group, args.only)
    started = dt.datetime.now(dt.timezone.utc)
    failed, runs = [], []
    for script in scripts:
        before = loadavg()
        print(f"== {script.name} (load average before: {_load(before)})", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), "--out", str(args.out)])
        wall = time.perf_counter() - t0
        after = loadavg()
        result = "ok" if rc == 0 else f"FAILED (rc {rc})"
        print(f"== {script.name}: {result}, {wall:.0f} s wall; load average {_load(before)} before, "
              f"{_load(after)} after", flush=True)
        runs.append({"name": script.stem.removeprefix("bench_"), "rc": rc, "wall_s": round(wall, 1),
                     "load_before": before, "load_after": after})
        if rc:
            failed.append(script.name)
    group = "only " + " ".join(args.only) if args.only else f"group {args.group}"
    lines = [f"# Benchmark results\n\nMachine: {machine()}; date: {started.date().isoformat()}; started "
             f"{started.isoformat(timespec='seconds')}, {group}\n",
             "Each benchmark's wall time and the load average (1/5/15 min) before and after it; each figure "
             f"in the files also records its own load and whether it was measured under load ({RULE}).\n",
             "| benchmark | result | wall s | load before | load after |", "| --- | --- | ---: | --- | --- |"]
    lines += [f"| {r['name']} | {'ok' if r['rc'] == 0 else 'failed'} | {r['wall_s']:.0f} | "
              f"{_load(r['load_before'])} | {_load(r['load_after'])} |" for r in runs]
    lines.append("")
    for path in sorted(args.out.glob("*.json")):
        data = json.loads(path.read_text())
        lines.append(f"## {path.stem}\n\n```json\n{json.dumps(data, indent=2)[:4000]}\n```\n")
    (args.out / "summary.md").write_text("\n".join(lines))
    if args.out.resolve() == (HERE / "results").resolve():
        # The README's and docs' figures are rendered from these files (scripts/render_figures.py).
        sys.path.insert(0, str(HERE.parent / "scripts"))
        import render_figures

        print("== render_figures.py", flush=True)
        if render_figures.main([]):
            failed.append("render_figures.py")
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
