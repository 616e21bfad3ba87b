"""How every speed benchmark times a figure (issue 22): the median of at least 3 runs, min and max kept,
the load average before and after, and whether the figure was measured under load.

    from timing import measure, interleaved
    t = measure(fn, repeat=3, warmup=1)     # one figure
    ts = interleaved({"a": fa, "b": fb}, 3)  # competitors alternating, so both see the same load

Each gives a dict (JSON-ready):

``median_s``, ``min_s``, ``max_s``, ``runs_s``
    wall seconds of each timed call (``cpu_*`` the same in CPU seconds: user + system of this process
    and of the children it waited for, e.g. a ``subprocess.run`` and its pool workers);
``load_before``, ``load_after``
    ``os.getloadavg()`` (1, 5 and 15 minutes) before the first and after the last timed call;
``others_cpu_share``
    the share of the whole machine's CPU time (all cores) that went to other processes while the figure
    was measured: busy time from /proc/stat minus this process tree's CPU time, over wall time x cores
    (``None`` where /proc/stat is missing);
``under_load``
    the rule below, applied to the figure.

The rule (``under_load``): a figure was measured under load when other processes took more than a
quarter of the machine's CPU while it ran (``others_cpu_share > 0.25``: half a core on two cores).
Where that share is unknown, when the 1-minute load average before it exceeded half the cores. The load
average alone is not the rule because it also counts this benchmark's own previous figure (it decays
over a minute); the CPU-time share counts other processes only. Renderers print "measured under load"
beside a figure whose file says ``"under_load": true``.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

#: others_cpu_share above which a figure is "measured under load" (a share of all cores)
OTHERS_SHARE_LIMIT = 0.25
#: where the share is unknown: 1-minute load average per core above which it is
LOAD_PER_CORE_LIMIT = 0.5
RULE = (f"under load when other processes took more than {OTHERS_SHARE_LIMIT:.0%} of the machine's CPU "
        f"while it was measured (or, where unknown, the 1-minute load average before it exceeded "
        f"{LOAD_PER_CORE_LIMIT:g} per core)")


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded to 2 decimals."""
    return [round(v, 2) for v in os.getloadavg()]


def own_cpu_s() -> float:
    """CPU seconds (user + system) of this process and of the children it has waited for."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores; /proc/stat), None where missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def under_load(load_before: list[float] | None, others_cpu_share: float | None = None,
               cores: int | None = None) -> bool:
    """The rule of this module's docstring (``RULE``)."""
    if others_cpu_share is not None:
        return others_cpu_share > OTHERS_SHARE_LIMIT
    if not load_before:
        return False
    return load_before[0] > LOAD_PER_CORE_LIMIT * (cores or os.cpu_count() or 1)


def spread(runs: list[float], digits: int = 4, prefix: str = "") -> dict:
    """``{median_s, min_s, max_s, runs_s}`` of a list of seconds (``prefix`` before each key)."""
    return {f"{prefix}median_s": round(statistics.median(runs), digits),
            f"{prefix}min_s": round(min(runs), digits), f"{prefix}max_s": round(max(runs), digits),
            f"{prefix}runs_s": [round(r, digits) for r in runs]}


class _Window:
    """Load, wall, own CPU and machine busy time at the start of a measurement; ``close`` gives the
    load after, the other processes' CPU share and the verdict."""

    def __init__(self) -> None:
        self.load_before = loadavg()
        self.wall, self.own, self.busy = time.perf_counter(), own_cpu_s(), machine_busy_s()

    def close(self) -> dict:
        wall, own, busy = time.perf_counter() - self.wall, own_cpu_s() - self.own, machine_busy_s()
        share = None
        if busy is not None and self.busy is not None and wall > 0:
            share = round(max(0.0, (busy - self.busy - own) / (wall * (os.cpu_count() or 1))), 3)
        return {"load_before": self.load_before, "load_after": loadavg(), "others_cpu_share": share,
                "under_load": under_load(self.load_before, share)}


def _timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    c0, w0 = own_cpu_s(), time.perf_counter()
    value = fn()
    return time.perf_counter() - w0, own_cpu_s() - c0, value


def measure(fn: Callable[[], object], repeat: int = 3, warmup: int = 0, digits: int = 4,
            keep_value: bool = False) -> dict:
    """``warmup`` untimed calls, then ``repeat`` (>= 3 for a reported figure) timed calls of ``fn``.

    Returns the dict of this module's docstring; with ``keep_value`` the last call's return value is
    under ``"value"`` (pop it before writing JSON).
    """
    for _ in range(warmup):
        fn()
    window = _Window()
    walls, cpus, value = [], [], None
    for _ in range(repeat):
        w, c, value = _timed(fn)
        walls.append(w)
        cpus.append(c)
    out = {**spread(walls, digits), **spread(cpus, digits, "cpu_"), "repeat": repeat, "warmup": warmup,
           **window.close()}
    if keep_value:
        out["value"] = value
    return out


def interleaved(fns: Mapping[str, Callable[[], object]], repeat: int = 3, warmup: int = 0,
                digits: int = 4, keep_value: bool = False) -> dict[str, dict]:
    """Time competitors in rounds: each round calls every function once (the order rotated each round),
    so all see the same load. Returns ``{name: measure-like dict}``; the load before and after and the
    others' CPU share are those of the whole interleaved run, and ``load_1min_before_runs`` gives the
    1-minute load before each of a name's calls."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    window = _Window()
    runs: dict[str, dict[str, list]] = {n: {"wall": [], "cpu": [], "load": [], "value": []} for n in names}
    for i in range(repeat):
        for name in names[i % len(names):] + names[:i % len(names)]:
            runs[name]["load"].append(round(os.getloadavg()[0], 2))
            w, c, value = _timed(fns[name])
            runs[name]["wall"].append(w)
            runs[name]["cpu"].append(c)
            runs[name]["value"] = value
    shared = window.close()
    out = {}
    for name in names:
        r = runs[name]
        out[name] = {**spread(r["wall"], digits), **spread(r["cpu"], digits, "cpu_"), "repeat": repeat,
                     "warmup": warmup, **shared, "load_1min_before_runs": r["load"]}
        if keep_value:
            out[name]["value"] = r["value"]
    return out


def window() -> _Window:
    """Open a measurement window by hand (for figures timed by a benchmark's own loop): ``w = window()``,
    ... , ``w.close()`` gives ``load_before``, ``load_after``, ``others_cpu_share``, ``under_load``."""
    return _Window()


def machine_facts(**more: str) -> dict:
    """The machine a results file was measured on (CPU model, cores, memory, Python; ``more`` adds, e.g.
    ``torch=torch.__version__``)."""
    import sys

    from run_all import cpu_model, memory_gib

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(memory_gib(), 1),
            "python": sys.version.split()[0], **more}


def write_result(out: Path, name: str, record: object) -> Path:
    """``record`` written atomically as ``out/name`` (the folder made when missing) and said on stdout:
    where every benchmark leaves its results file."""
    from talkface.utils.atomic import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / name, record)
    print(f"wrote {out / name}")
    return out / name


def grid_fixtures() -> Path | None:
    """The GRID fixtures' folder, or None (said on stdout) when they are not here."""
    from talkface.utils.fixtures import fixtures_dir

    grid = fixtures_dir() / "grid"
    if not (grid / "s1").is_dir():
        print(f"skipped: GRID fixtures not found at {grid} (set TALKFACE_FIXTURES)")
        return None
    return grid
