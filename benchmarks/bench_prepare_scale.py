"""Preparation at corpus scale: ``talkface prepare grid`` on N clips, 1 and 2 worker processes and Ray.

Issue 22 asks that preparation stay fast at corpus scale: flat memory, constant clips/s. This benchmark

1. builds a GRID corpus (Zenodo layout: ``s1/<name>.mpg``, ``alignments/s1/<name>.align``) of N clips
   in a temporary folder: the GRID s1 fixture clips hard-linked (symlinked or copied where that fails)
   under N distinct valid GRID names, each with an alignment that spells its new name (the fixture's
   timings, the new name's six words), so every clip is a distinct clip to ``prepare`` and keeps its
   words;
2. runs the CLI, ``talkface prepare grid CORPUS --out DATASET -j 1`` and ``-j 2``, each a fresh
   process, and records wall time, clips/s, x real time per core (seconds of video prepared per wall
   second per worker), CPU time, and peak memory sampled from the process tree (``/proc``, every
   ``--interval`` s: RSS of every process, the workers' and the total; PSS of the total, which counts a
   page shared by several processes once), with the throughput and the largest worker's peak RSS in each
   tenth of the clips (from each ``rows/<id>.json``'s write time): flat memory and constant clips/s
   show there;
3. starts a local two-node Ray cluster (``ray start --head --num-cpus 1`` and ``ray start --address HEAD
   --num-cpus 1``, each in a process group of its own, with a random token: ``RAY_AUTH_MODE=token``), runs
   ``talkface prepare grid ... --executor ray --ray-address HEAD``, measures it the same way, checks the
   dataset equals the ``-j 2`` one (clip ids, statuses, frame counts, landmark arrays, and which files
   are byte-identical), and records which node ran each clip. ``prepare`` does not record the node (a
   row is the same whichever executor made it), so the benchmark sees it: each Ray worker process
   descends from the ``ray start`` of its node, and the clip it is preparing is the one whose source
   video or temporary output files it holds open (``/proc/<pid>/fd``, polled every 20 ms). The cluster
   is stopped at the end, also on failure, by signalling the processes this benchmark started (not
   with ``ray stop``, which stops every Ray process of the machine, other users' included).

Load average before and after each figure is recorded: on a shared machine read the CPU seconds. The
fixture clips are read from the page cache after the first pass (they are linked, not distinct files),
so disk reads of a real corpus are not measured.

Usage (on an idle machine; Linux):
    python benchmarks/bench_prepare_scale.py --out benchmarks/results [--clips 1000] [--quick] [--no-ray]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from talkface import __version__
from talkface.prepare.corpora.grid import GRAMMAR, SILENCE, decode_sentence, encode_sentence, parse_align
from talkface.utils.fixtures import fixtures_dir

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # the talkface and ray commands of this environment
SPEAKER = "s1"
MIB = 2**20
TARGETS = {"x_real_time_per_core_2_workers": 8.0, "peak_rss_per_worker_mib": 1024.0}


# -- the corpus ----------------------------------------------------------------------------------------


def grid_names(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct GRID sentence codes (command colour preposition letter digit adverb), seeded."""
    codes = ["".join(c) for c in itertools.product(*(sorted(table) for table in GRAMMAR))]
    if n > len(codes):
        raise ValueError(f"GRID has {len(codes)} sentence codes; asked for {n} clips")
    random.Random(seed).shuffle(codes)
    return codes[:n]


def _renamed_alignment(text: str, name: str) -> str:
    """An ``.align`` text with its spoken words replaced by ``name``'s words (times and silences kept)."""
    words = iter(decode_sentence(name) or [])
    lines = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2].lower() not in SILENCE:
            fields[2] = next(words)
        lines.append(" ".join(fields))
    return "\r\n".join(lines) + "\r\n"


def _link(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        pass
    try:
        dst.symlink_to(src)
        return "symlink"
    except OSError:
        shutil.copyfile(src, dst)
        return "copy"


def build_corpus(root: Path, n: int) -> dict[str, Any]:
    """A GRID corpus of ``n`` clips under ``root`` from the s1 fixtures; returns what was built."""
    fixtures = fixtures_dir() / "grid"
    align_dir = fixtures / "alignments" / SPEAKER
    templates = []
    for video in sorted((fixtures / SPEAKER).glob("*.mpg")):
        align = align_dir / f"{video.stem}.align"
        if not align.is_file():
            continue
        spoken = [w for _, _, w in parse_align(align) if w.lower() not in SILENCE]
        if encode_sentence(spoken) == video.stem.lower():  # only fixtures whose alignment is their own
            templates.append((video, align.read_text(encoding="ascii")))
    if not templates:
        raise SystemExit(f"no GRID s1 fixture clips with alignments under {fixtures}")
    (root / SPEAKER).mkdir(parents=True)
    (root / "alignments" / SPEAKER).mkdir(parents=True)
    how: dict[str, int] = {}
    for i, name in enumerate(grid_names(n)):
        video, align_text = templates[i % len(templates)]
        kind = _link(video, root / SPEAKER / f"{name}.mpg")
        how[kind] = how.get(kind, 0) + 1
        (root / "alignments" / SPEAKER / f"{name}.align").write_text(_renamed_alignment(align_text, name),
                                                                        encoding="ascii")
    return {"clips": n, "fixture_clips": len(templates), "videos": how,
            "source": f"GRID {SPEAKER} fixtures, 360x288, 25 fps, 3 s each, under distinct GRID names"}


# -- sampling the process tree (/proc) -----------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
CLIP_IN_NAME = re.compile(rf"{SPEAKER}_[a-z0-9]{{6}}")  # a clip id in a dataset file's (temporary) name


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def _stat(pid: int) -> tuple[int, int, float, int] | None:
    """(ppid, process group, CPU seconds, start time in ticks) of ``pid``, None when it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    rest = text[text.rfind(")") + 2:].split()
    return int(rest[1]), int(rest[2]), (int(rest[11]) + int(rest[12])) / CLK_TCK, int(rest[19])


def _alive(pid: int, start: int) -> bool:
    """Whether the process ``pid`` that started at ``start`` (ticks) still runs (a zombie does not)."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return False
    rest = text[text.rfind(")") + 2:].split()
    return rest[0] != "Z" and int(rest[19]) == start


def _descendants(root: int) -> dict[int, int]:
    """pid -> start ticks of ``root`` and every process descending from it."""
    stats = {int(e): _stat(int(e)) for e in os.listdir("/proc") if e.isdigit()}
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        if st is not None:
            children.setdefault(st[0], []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        st = stats.get(pid)
        if st is not None and pid not in found:
            found[pid] = st[3]
            todo.extend(children.get(pid, []))
    return found


def _rss(pid: int) -> int:
    text = _read(f"/proc/{pid}/statm")
    return int(text.split()[1]) * PAGE if text else 0


def _pss(pid: int) -> int:
    text = _read(f"/proc/{pid}/smaps_rollup") or ""
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else 0


def _cmdline(pid: int) -> str:
    return (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()


def _open_paths(pid: int) -> list[str]:
    folder = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(folder)
    except OSError:
        return []
    paths = []
    for fd in fds:
        with contextlib.suppress(OSError):
            paths.append(os.readlink(f"{folder}/{fd}"))
    return paths


class TreeSampler(threading.Thread):
    """Samples the processes descending from ``roots``: every ``interval`` s the RSS and CPU time of
    each, every ``pss_interval`` s their total PSS (reading it costs ~15 ms of CPU per large process),
    every ``fd_interval`` s the clip each worker holds open.

    ``kind(cmdline)`` names a process ``driver``, ``worker`` or ``other``; the processes of
    ``worker_kind`` prepare clips (``driver`` with one worker: the command prepares them itself).
    ``nodes`` names some roots (the Ray nodes' ``ray start``): a process descending from one of them is
    on that node.
    """

    def __init__(self, roots: list[int], corpus: Path, out: Path, kind: Any, interval: float,
                 nodes: dict[int, str] | None = None, worker_kind: str = "worker",
                 fd_interval: float = 0.02, pss_interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.roots, self.kind, self.interval, self.worker_kind = roots, kind, interval, worker_kind
        self.fd_interval, self.pss_interval, self._next_pss = fd_interval, pss_interval, 0.0
        self.corpus, self.out = str(corpus) + "/", str(out) + "/"
        self.nodes = nodes or {}
        self.stop_event = threading.Event()
        self.procs: dict[tuple[int, int], dict[str, Any]] = {}  # (pid, start) -> figures
        self.samples: list[tuple[float, int, int, int]] = []  # t, total rss, workers rss, max worker
        self.pss: list[tuple[float, int]] = []  # t, total pss
        self.clip_seen: dict[str, set[tuple[int, int]]] = {}
        self._workers: list[tuple[int, int]] = []  # the worker processes alive at the last sample
        self.sample_s: list[float] = []  # how long each sample took
        self.poll_gaps: list[float] = []  # seconds between two polls of the workers' open files

    def _members(self) -> dict[int, tuple[int, int, float, int, str | None]]:
        """pid -> (ppid, process group, CPU s, start ticks, node) of every process under the roots."""
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _stat(int(entry))
                if st is not None:
                    stats[int(entry)] = st
        children: dict[int, list[int]] = {}
        for pid, (ppid, *_rest) in stats.items():
            children.setdefault(ppid, []).append(pid)
        found: dict[int, str | None] = {}
        todo = [(r, self.nodes.get(r)) for r in self.roots if r in stats]
        while todo:
            pid, node = todo.pop()
            if pid not in found:
                found[pid] = node
                todo.extend((child, node) for child in children.get(pid, []))
        return {pid: (*stats[pid], node) for pid, node in found.items()}

    def _clips_open(self, pid: int) -> set[str]:
        """The clips whose source video (corpus) or temporary output files (dataset) ``pid`` holds open."""
        clips = set()
        for path in _open_paths(pid):
            if path.startswith(self.corpus) and path.endswith(".mpg"):
                clips.add(f"{SPEAKER}_{Path(path).stem}")
            elif path.startswith(self.out):
                m = CLIP_IN_NAME.search(Path(path).name)
                if m:
                    clips.add(m.group(0))
        return clips

    def sample(self) -> None:
        now = time.time()
        total = pss = workers = biggest = 0
        alive = []
        with_pss = time.perf_counter() >= self._next_pss
        if with_pss:
            self._next_pss = time.perf_counter() + self.pss_interval
        for pid, (_ppid, _pgrp, cpu, start, node) in self._members().items():
            rss = _rss(pid)
            if not rss:  # a zombie
                continue
            cmd = _cmdline(pid)
            kind = self.kind(cmd)
            rec = self.procs.get((pid, start))
            if rec is None:  # a process already running at the first sample: its CPU time so far is not
                # this run's (a Ray node's processes and idle workers started with the cluster)
                rec = self.procs[(pid, start)] = {"pid": pid, "kind": kind, "cmd": cmd[:120], "node": node,
                                                  "peak_rss": 0, "cpu_s": 0.0,
                                                  "cpu0": cpu if not self.samples else 0.0, "clips": set()}
            if kind == "worker":  # a Ray worker is named ray::IDLE until its first task
                rec["kind"] = "worker"
            rec["peak_rss"] = max(rec["peak_rss"], rss)
            rec["cpu_s"] = cpu - rec["cpu0"]
            total += rss
            if with_pss:
                pss += _pss(pid)
            if rec["kind"] == self.worker_kind:
                workers += rss
                biggest = max(biggest, rss)
                alive.append((pid, start))
        self._workers = alive
        self.samples.append((now, total, workers, biggest))
        if with_pss:
            self.pss.append((now, pss))

    def poll_clips(self) -> None:
        for key in self._workers:
            for clip in self._clips_open(key[0]):
                self.procs[key]["clips"].add(clip)
                self.clip_seen.setdefault(clip, set()).add(key)

    def run(self) -> None:
        next_sample = 0.0
        last_poll = None
        while not self.stop_event.is_set():
            with contextlib.suppress(Exception):  # a process that ends while it is read
                t = time.perf_counter()
                if t >= next_sample:
                    next_sample = t + self.interval
                    self.sample()
                    self.sample_s.append(time.perf_counter() - t)
                self.poll_clips()
                t = time.perf_counter()
                if last_poll is not None:
                    self.poll_gaps.append(t - last_poll)
                last_poll = t
            self.stop_event.wait(self.fd_interval)

    def finish(self) -> None:
        self.stop_event.set()
        self.join()


def _process_kind(cmd: str) -> str:
    if "multiprocessing.spawn" in cmd and "spawn_main" in cmd:
        return "worker"
    return "other" if "multiprocessing" in cmd else "driver"  # the resource tracker is "other"


def _ray_kind(cmd: str) -> str:
    if cmd.startswith(RAY_AGENTS):
        return "other"
    if cmd.startswith("ray::") or "default_worker.py" in cmd:
        return "worker"
    return "driver" if " prepare grid " in f" {cmd} " else "other"


# -- one run of the CLI --------------------------------------------------------------------------------


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _ms(seconds: list[float], q: float) -> float | None:
    return round(1000 * float(np.percentile(seconds, q)), 1) if seconds else None


def _mib(n: float) -> float:
    return round(n / MIB, 1)


def run_cli(name: str, corpus: Path, out: Path, args: list[str], interval: float,
            env: dict[str, str] | None = None, nodes: dict[int, str] | None = None) -> dict[str, Any]:
    """``talkface prepare grid corpus --out out *args`` in a fresh process, sampled; its figures."""
    import pandas as pd

    cmd = [str(BIN / "talkface"), "prepare", "grid", str(corpus), "--out", str(out), *args]
    load_before = _load()
    log = out.parent / f"{out.name}.log"
    workers = 1 if "-j" in args and args[args.index("-j") + 1] == "1" and not nodes else 2
    worker_kind = "driver" if workers == 1 else "worker"
    t0 = time.time()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        kind = _ray_kind if nodes else _process_kind
        sampler = TreeSampler([proc.pid, *(nodes or {})], corpus, out, kind, interval, nodes, worker_kind)
        sampler.start()
        try:
            rc = proc.wait()
        except BaseException:  # stopped (Ctrl-C, SIGTERM): the command stops too
            proc.terminate()
            proc.wait()
            raise
        finally:
            sampler.finish()
    wall = time.time() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    load_after = _load()
    if rc:
        raise RuntimeError(f"{name}: {' '.join(cmd)} exited {rc}:\n{log.read_text()[-4000:]}")

    manifest = pd.read_parquet(out / "manifest.parquet")
    fps = float(manifest.fps.iloc[0])
    frames = int(manifest.n_frames.fillna(0).sum())
    video_s = frames / fps
    n = len(manifest)
    done = sorted((out / "rows" / f"{cid}.json").stat().st_mtime for cid in manifest.clip_id)
    per_clip_s = {cid: int(nf or 0) / fps
                  for cid, nf in zip(manifest.clip_id, manifest.n_frames, strict=True)}

    # Tenths of the clips in the order they finished: seconds, clips/s, and the peak RSS of the workers
    # (and of everything) while that tenth was prepared. The first tenth runs from the command's start
    # (imports, discovery, model loading included).
    tenths = []
    bounds = [round(k * n / 10) for k in range(11)]
    for k in range(10):
        lo, hi = bounds[k], bounds[k + 1]
        if hi <= lo:
            continue
        start = t0 if lo == 0 else done[lo - 1]
        end = done[hi - 1]
        window = [s for s in sampler.samples if start <= s[0] <= end] or \
                 [min(sampler.samples, key=lambda s: abs(s[0] - end))]
        tenths.append({"clips": hi - lo, "seconds": round(end - start, 2),
                       "clips_per_s": round((hi - lo) / max(end - start, 1e-9), 3),
                       "worker_peak_rss_mib": _mib(max(s[3] for s in window)),
                       "total_peak_rss_mib": _mib(max(s[1] for s in window))})
    steady_from = done[bounds[1] - 1] if n >= 10 else done[0]
    steady_clips = n - (bounds[1] if n >= 10 else 1)
    steady_s = done[-1] - steady_from
    steady_video = steady_clips * (video_s / n)

    procs = list(sampler.procs.values())
    worker_procs = [p for p in procs if p["kind"] == worker_kind]
    # CPU seconds: the command and the pool workers it reaped, exactly (getrusage); with Ray the sampled
    # CPU time of every process of the tree (Ray's own included) over the run
    cpu_sampled = sum(p["cpu_s"] for p in procs)
    cpu_rusage = usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime
    cpu_all = cpu_sampled if nodes else cpu_rusage
    per_worker = [{"pid": p["pid"], "node": p["node"], "clips": len(p["clips"]),
                   "peak_rss_mib": _mib(p["peak_rss"]), "cpu_s": round(p["cpu_s"], 2)}
                  for p in sorted(worker_procs, key=lambda p: p["pid"])]
    peak_worker = max((p["peak_rss"] for p in worker_procs), default=0)
    result: dict[str, Any] = {
        "command": " ".join(["talkface", *cmd[1:]]).replace(str(corpus), "CORPUS").replace(str(out), "OUT"),
        "workers": workers,
        "clips": n,
        "statuses": {str(k): int(v) for k, v in manifest.status.value_counts().items()},
        "frames": frames,
        "video_s": round(video_s, 1),
        "wall_s": round(wall, 2),
        "clips_per_s": round(n / wall, 3),
        "x_real_time_per_core": round(video_s / wall / workers, 2),
        "steady_clips_per_s": round(steady_clips / max(steady_s, 1e-9), 3),
        "steady_x_real_time_per_core": round(steady_video / max(steady_s, 1e-9) / workers, 2),
        "cpu_s": round(cpu_all, 1),
        "cpu_s_sampled": round(cpu_sampled, 1),
        "cpu_s_per_clip": round(cpu_all / n, 3),
        "x_real_time_per_cpu_s": round(video_s / cpu_all, 2) if cpu_all else None,
        "memory": {
            "peak_rss_per_worker_mib": _mib(peak_worker),
            "peak_rss_workers_total_mib": _mib(max((s[2] for s in sampler.samples), default=0)),
            "peak_rss_total_mib": _mib(max((s[1] for s in sampler.samples), default=0)),
            "peak_pss_total_mib": _mib(max((p for _, p in sampler.pss), default=0)),
            "pss_interval_s": sampler.pss_interval,
            "processes": len(procs),
            "samples": len(sampler.samples),
            "interval_s": interval,
            "sample_ms_median": _ms(sampler.sample_s, 50),
            "sampler_cpu_s": round(self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime, 2),
            "open_files_poll_gap_ms_p99": _ms(sampler.poll_gaps, 99),
            "open_files_poll_gap_ms_max": _ms(sampler.poll_gaps, 100),
        },
        "tenths": tenths,
        "per_worker": per_worker,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    if len(tenths) >= 3:
        second, last = tenths[1], tenths[-1]
        result["last_vs_second_tenth"] = {
            "clips_per_s_ratio": round(last["clips_per_s"] / max(second["clips_per_s"], 1e-9), 3),
            "worker_peak_rss_growth_mib": round(last["worker_peak_rss_mib"]
                                                - second["worker_peak_rss_mib"], 1),
        }
    if nodes:
        result["nodes"] = _node_share(sampler, list(manifest.clip_id), per_clip_s)
    result["_sampler"] = sampler  # removed before writing
    return result


def _node_share(sampler: TreeSampler, clip_ids: list[str], per_clip_s: dict[str, float]) -> dict[str, Any]:
    """Which Ray node ran each clip: the node of the worker seen holding its files open."""
    node_of = {}
    ambiguous = []
    for clip in clip_ids:
        seen = sampler.clip_seen.get(clip, set())
        nodes = {sampler.procs[key]["node"] for key in seen}
        if len(nodes) == 1:
            node_of[clip] = nodes.pop()
        elif nodes:
            ambiguous.append(clip)
    share: dict[str, Any] = {}
    for node in sorted(set(sampler.nodes.values())):
        clips = [c for c, nd in node_of.items() if nd == node]
        share[node] = {"clips": len(clips), "share": round(len(clips) / len(clip_ids), 3),
                       "video_s": round(sum(per_clip_s[c] for c in clips), 1),
                       "worker_processes": sum(1 for p in sampler.procs.values()
                                               if p["node"] == node and p["clips"])}
    return {"by_node": share, "clips_attributed": len(node_of), "clips_not_seen": len(clip_ids) - len(node_of)
            - len(ambiguous), "clips_on_two_nodes": len(ambiguous),
            "how": "each clip's node: the Ray node (the `ray start` it descends from) of the worker process "
                   "seen holding the clip's source video or temporary output files open (/proc/<pid>/fd, "
                   "polled)"}


# -- Ray: a two-node cluster on this machine -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """A head and one more node (``ray start --block``, one CPU each), each in a process group of its
    own, joined with a random token."""

    def __init__(self, folder: Path, temp_root: Path | None = None, object_store_mib: int = 100) -> None:
        self.folder, self.object_store = folder, object_store_mib * MIB
        # Ray's session folder holds unix sockets, whose paths must stay under 108 bytes: a short one
        # (``ray`` + 8 characters in ``temp_root``, default the system's temporary folder).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir=temp_root))
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN=secrets.token_hex(32))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen] = {}

    def _node_ports(self) -> list[str]:
        # Two nodes on one machine: every agent port chosen free (the defaults would collide).
        return ["--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port",
                str(_free_port()), "--metrics-export-port", str(_free_port()), "--runtime-env-agent-port",
                str(_free_port()), "--object-store-memory", str(self.object_store), "--disable-usage-stats",
                "--block"]

    def _start(self, name: str, args: list[str], timeout: float) -> None:
        log = self.folder / f"ray_{name}.log"
        with open(log, "w") as fh:
            self.nodes[name] = subprocess.Popen([str(BIN / "ray"), "start", *args, *self._node_ports()],
                                                stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                                start_new_session=True)
        deadline = time.time() + timeout
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if self.nodes[name].poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start ({name}) failed:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def start(self, timeout: float = 180.0) -> float:
        t0 = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._start("head", ["--head", "--port", str(self.port), "--num-cpus", "1", "--include-dashboard",
                             "false", "--dashboard-port", str(_free_port()), "--ray-client-server-port",
                             str(_free_port()), "--temp-dir", str(self.temp_dir)], timeout)
        self._start("node2", ["--address", self.address, "--num-cpus", "1"], timeout)
        self.check(2, timeout)
        return time.time() - t0

    def check(self, n: int, timeout: float) -> list[dict[str, Any]]:
        """The cluster's nodes as Ray lists them (a short driver), once ``n`` are alive."""
        code = (f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR', "
                "log_to_driver=False); print(json.dumps([{'node_id': x['NodeID'], 'alive': x['Alive'], "
                "'cpus': x['Resources'].get('CPU')} for x in ray.nodes()]))")
        deadline = time.time() + timeout
        while True:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env)
            nodes = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else []
            if sum(x["alive"] for x in nodes) >= n:
                return nodes
            if time.time() > deadline:
                raise RuntimeError(f"Ray cluster at {self.address}: {nodes or out.stderr[-2000:]}")
            time.sleep(2)

    def roots(self) -> dict[int, str]:
        """pid of each node's ``ray start`` -> the node's name."""
        return {p.pid: name for name, p in self.nodes.items()}

    def stop(self, grace: float = 40.0) -> None:
        """Stop the nodes this cluster started: SIGTERM to each ``ray start``'s process group (a node
        drains for up to 30 s, then stops its processes), SIGKILL to those groups and to every process
        that descended from them (Ray's workers among them) still there after ``grace`` s. Nothing else
        is signalled (``ray stop`` would stop every Ray process of the machine)."""
        trees = {name: _descendants(leader.pid) for name, leader in self.nodes.items()}
        for leader in self.nodes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader.pid, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline:
            for name, leader in self.nodes.items():
                leader.poll()  # reap it
                trees[name].update(_descendants(leader.pid))
            if not any(_alive(pid, start) for tree in trees.values() for pid, start in tree.items()):
                break
            time.sleep(0.5)
        else:
            for name, leader in self.nodes.items():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(leader.pid, signal.SIGKILL)
                for pid, start in trees[name].items():
                    if _alive(pid, start):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        for leader in self.nodes.values():
            leader.wait()
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# -- comparing two datasets ----------------------------------------------------------------------------


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def compare_datasets(ref: Path, other: Path) -> dict[str, Any]:
    """Clip ids, statuses, frame counts and landmark arrays of ``other`` against ``ref``; byte-identical
    files counted."""
    import pandas as pd

    a = pd.read_parquet(ref / "manifest.parquet").set_index("clip_id").sort_index()
    b = pd.read_parquet(other / "manifest.parquet").set_index("clip_id").sort_index()
    same_ids = list(a.index) == list(b.index)
    common = a.index.intersection(b.index)
    arrays_equal = landmarks_equal = 0
    for cid in common:
        if not (ref / "clips" / f"{cid}.npz").exists():
            continue
        with np.load(ref / "clips" / f"{cid}.npz") as za, np.load(other / "clips" / f"{cid}.npz") as zb:
            landmarks_equal += np.array_equal(za["landmarks"], zb["landmarks"], equal_nan=True)
            arrays_equal += set(za.files) == set(zb.files) and all(
                np.array_equal(za[k], zb[k], equal_nan=za[k].dtype.kind == "f") for k in za.files)
    identical = {}
    for folder, suffix in (("rows", ".json"), ("clips", ".npz"), ("crops", ".mp4")):
        identical[folder] = sum(_sha(ref / folder / f"{c}{suffix}") == _sha(other / folder / f"{c}{suffix}")
                                for c in common)
    with_npz = int((a.loc[common].status != "failed").sum())
    return {
        "same_clip_ids": same_ids,
        "same_statuses": same_ids and bool((a.status == b.status).all()),
        "same_frame_counts": same_ids and bool(a.n_frames.fillna(-1).equals(b.n_frames.fillna(-1))),
        "clips_with_arrays": with_npz,
        "landmarks_equal": landmarks_equal,
        "all_arrays_equal": arrays_equal,
        "byte_identical_files": {**identical, "of": len(common)},
        "manifest_equal": bool(a.equals(b)),
    }


# -- provenance and the run ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from run_all import cpu_model, memory_gib

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(memory_gib(), 1),
            "python": platform.python_version(), "platform": platform.platform(), "nice": os.nice(0)}
    for package in ("ray", "dlib-bin", "opencv-python-headless", "av"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    return info


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not k.startswith("_")}


@contextlib.contextmanager
def _ray_cluster(folder: Path, temp_root: Path | None) -> Iterator[LocalRayCluster]:
    cluster = LocalRayCluster(folder, temp_root)
    try:
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--quick", action="store_true",
                        help="20 clips, results in prepare_scale.quick.json (a check that it runs)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray cluster run")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between process-tree samples")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the corpus and datasets")
    args = parser.parse_args(argv)
    n = 20 if args.quick else args.clips
    # SIGTERM unwinds like Ctrl-C: the command running is stopped, the Ray cluster too, the folder removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = dt.datetime.now().astimezone()
    result: dict[str, Any] = {
        "benchmark": "prepare_scale",
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "talkface_version": __version__,
        "nice": os.nice(0),
        "quick": args.quick,
        "load_average_before": _load(),
        "timing": "wall time of each `talkface prepare` command from launch to exit (imports, discovery, "
                  "model loading, manifest included); steady = after the first tenth of the clips (from the "
                  "rows' write times); x real time per core = seconds of video prepared per wall second per "
                  "worker; CPU seconds of the command and its pool workers (getrusage), with Ray of every "
                  "process of the command and the two nodes over the run (sampled from /proc); RSS sampled "
                  "every interval_s, PSS every pss_interval_s",
        "targets": dict(TARGETS),
    }
    with tempfile.TemporaryDirectory(prefix="bench_prepare_scale_", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "grid"
        result["corpus"] = build_corpus(corpus, n)
        runs: dict[str, dict[str, Any]] = {}
        for workers in (1, 2):
            print(f"== prepare -j {workers}: {n} clips", flush=True)
            runs[f"process_{workers}"] = run_cli(f"process_{workers}", corpus, tmp / f"process_{workers}",
                                                 ["-j", str(workers)], args.interval)
        result["process_1_same_as_process_2"] = compare_datasets(tmp / "process_2", tmp / "process_1")
        if args.no_ray:
            result["ray"] = "not run (--no-ray)"
        else:
            print("== ray: starting a two-node cluster", flush=True)
            with _ray_cluster(tmp / "cluster", args.tmp) as cluster:
                result["ray_cluster_start_s"] = round(cluster.start(), 1)
                result["ray_nodes"] = cluster.check(2, 60)
                print(f"== prepare --executor ray --ray-address {cluster.address}: {n} clips", flush=True)
                runs["ray_2_nodes"] = run_cli(
                    "ray_2_nodes", corpus, tmp / "ray", ["-j", "2", "--executor", "ray", "--ray-address",
                                                         cluster.address], args.interval, env=cluster.env,
                    nodes=cluster.roots())
                t_stop = time.time()
            result["ray_cluster_stop_s"] = round(time.time() - t_stop, 1)
            result["ray_same_as_process_2"] = compare_datasets(tmp / "process_2", tmp / "ray")
        result["runs"] = {k: _public(v) for k, v in runs.items()}
    two, x_target = runs["process_2"], TARGETS["x_real_time_per_core_2_workers"]
    result["targets_met"] = {
        "x_real_time_per_core_2_workers": two["x_real_time_per_core"] >= x_target,
        "steady_x_real_time_per_core_2_workers": two["steady_x_real_time_per_core"] >= x_target,
        "peak_rss_per_worker": all(r["memory"]["peak_rss_per_worker_mib"] < TARGETS["peak_rss_per_worker_mib"]
                                   for r in runs.values()),
    }
    if "ray_2_nodes" in runs:
        result["targets_met"]["ray_x_real_time_per_core_2_nodes"] = \
            runs["ray_2_nodes"]["x_real_time_per_core"] >= x_target
    result["load_average_after"] = _load()
    result["elapsed_s"] = round((dt.datetime.now().astimezone() - started).total_seconds(), 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("prepare_scale.quick.json" if args.quick else "prepare_scale.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
