"""Run every benchmark (``benchmarks/bench_*.py --out benchmarks/results``) and collect their results.

``make bench`` calls this. Each benchmark writes its own JSON under benchmarks/results/; this script
adds ``benchmarks/results/summary.md`` with the machine and date, then runs scripts/render_figures.py,
which rewrites the README's and docs' figures from those files (only when ``--out`` is that folder).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only", nargs="*", help="benchmark names (bench_<name>.py) to run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        rc = subprocess.call([sys.executable, str(script), "--out", str(args.out)])
        if rc:
            failed.append(script.name)
    lines = [f"# Benchmark results\n\nMachine: {machine()}; date: {dt.date.today().isoformat()}\n"]
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
