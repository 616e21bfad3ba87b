"""Shared test fixtures: the real clips in ../shared/fixtures and prepared datasets made from them.

The real clips are required in CI (CI=true): there a missing fixtures folder fails the run instead of
skipping, so a green CI always means the real-data tests ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from browser import browser_page  # noqa: F401  (headless Chromium fixture for page tests)
from needs import require_path

from talkface.utils.fixtures import fixtures_dir

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _require(path: Path) -> Path:
    return require_path(path, "real-clip fixtures")


@pytest.fixture(scope="session")
def fixtures_root() -> Path:
    return _require(fixtures_dir())


@pytest.fixture(scope="session")
def grid_root(fixtures_root: Path) -> Path:
    return _require(fixtures_root / "grid")


@pytest.fixture(scope="session")
def voxceleb_root(fixtures_root: Path) -> Path:
    return _require(fixtures_root / "voxceleb_style")


# Ten s1 clips spread over the fixture set (every 12th in name order): enough for train/val windows.
PREPARED_GRID_N = 10


def _prepare_grid(root: Path, out: Path, clip_filter, workers: int = 1) -> Path:
    from talkface.prepare.corpora import get_recipe
    from talkface.prepare.run import PrepareConfig, run_prepare
    from talkface.store.dataset_writer import DatasetStore

    sources = [s for s in get_recipe("grid").discover(root, split="seen").clips if clip_filter(s)]
    store = DatasetStore(out)
    run_prepare(sources, store, PrepareConfig(), workers=workers)
    return out


@pytest.fixture(scope="session")
def prepared_grid(grid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared GRID dataset (DatasetStore root): 10 real s1 clips, dlib, 128 px crops, logmel."""
    from talkface.prepare.corpora import get_recipe

    s1 = sorted(c.clip_id for c in get_recipe("grid").discover(grid_root).clips if c.speaker == "s1")
    chosen = set(s1[:: max(1, len(s1) // PREPARED_GRID_N)][:PREPARED_GRID_N])
    return _prepare_grid(grid_root, tmp_path_factory.mktemp("prepared_grid"), lambda s: s.clip_id in chosen)


# All 127 fixture clips, prepared once per session by run_prepare's own 2-worker pool. The dlib tracking
# is most of a clip's preparation, and tests/test_landmarks_dlib.py checks the raw tracks of all 125 s1
# clips: each worker keeps the track its landmark backend returned, so no clip is tracked twice.


class _KeepTrack:
    """A prepare worker's landmark backend, unchanged, keeping the last raw track it returned."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.last = None

    def track(self, frames):
        self.last = self.backend.track(frames)
        return self.last

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def _init_keeping_tracks(config, root: str) -> None:
    """run_prepare's worker initialiser, then the backend wrapped (runs in each spawned worker)."""
    from talkface.prepare import run as pipeline

    pipeline._init_worker(config, root)
    pipeline._WORKER_TOOLS.landmarks = _KeepTrack(pipeline._WORKER_TOOLS.landmarks)


def _run_keeping_track(source) -> dict:
    """run_prepare's per-clip worker call; the row comes back with the clip's raw track."""
    from talkface.prepare import run as pipeline

    keeper = pipeline._WORKER_TOOLS.landmarks
    keeper.last = None
    row = pipeline._run_in_worker(source)
    return {**row, "_raw_track": keeper.last}


@pytest.fixture(scope="session")
def _grid_all(grid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(store root, {resolved source video: raw LandmarkTrack}) of the 127-clip preparation."""
    from talkface.prepare import run as pipeline
    from talkface.prepare.corpora import get_recipe
    from talkface.store.dataset_writer import DatasetStore

    out = tmp_path_factory.mktemp("prepared_grid_all")
    sources = get_recipe("grid").discover(grid_root, split="seen").clips
    video = {s.clip_id: Path(s.source_video).resolve() for s in sources}
    tracks: dict[Path, object] = {}

    def keep(row: dict) -> None:
        track = row.pop("_raw_track")
        if track is not None:
            tracks[video[row["clip_id"]]] = track

    with pytest.MonkeyPatch.context() as mp:  # the pool looks both names up when it starts
        mp.setattr(pipeline, "_init_worker", _init_keeping_tracks)
        mp.setattr(pipeline, "_run_in_worker", _run_keeping_track)
        summary = pipeline.run_prepare(sources, DatasetStore(out), pipeline.PrepareConfig(), workers=2,
                                       on_clip=keep)
    assert summary.prepared == len(sources) == len(tracks)  # every clip went through the workers
    return out, tracks


@pytest.fixture(scope="session")
def prepared_grid_all(_grid_all: tuple[Path, dict]) -> Path:
    """All 127 fixture clips prepared with 2 workers (the issue's 'done when' run; see ``_grid_all``)."""
    return _grid_all[0]


@pytest.fixture(scope="session")
def grid_tracks(_grid_all: tuple[Path, dict]) -> dict:
    """The raw dlib tracks (``LandmarkTrack``, before rejection, gap filling and smoothing) that the
    ``prepared_grid_all`` run computed, by resolved source video: the default ``dlib`` backend on the
    clip's frames decoded at 25 fps, exactly as ``get_landmark_backend("dlib").track`` gives them."""
    return _grid_all[1]


# The quick demo of tests/test_demo.py: minutes in one subprocess that keeps mostly one core busy, while
# this process runs the other tests on the other core. When a selected test needs it (``demo_run``), it
# starts before the first test, the tests that read its outputs run last, and ``demo_run`` waits for it
# to end.


def _uses_demo(item: pytest.Item) -> bool:
    return "demo_run" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_uses_demo)  # stable: otherwise the collection order


class BackgroundDemo:
    """``talkface demo --quick --out OUT`` in a subprocess, its output in files next to OUT."""

    def __init__(self, out: Path) -> None:
        self.out = out
        # files, not pipes: nobody reads the output until the demo ends (closed in stop())
        self._stdout = open(out.parent / "demo.stdout", "w+")
        self._stderr = open(out.parent / "demo.stderr", "w+")
        args = [sys.executable, "-m", "talkface.cli", "demo", "--quick", "--out", str(out)]
        self.started = time.time()
        self.ended: float | None = None
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr,
                                     text=True, env={**os.environ, "COLUMNS": "160"}, start_new_session=True)
        self._watch = threading.Thread(target=self._wait_end, daemon=True)
        self._watch.start()

    def _wait_end(self) -> None:
        self.proc.wait()
        self.ended = time.time()

    def result(self, timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
        """The finished run (its stdout and stderr as text) and its wall time in seconds."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        self._watch.join()
        outputs = []
        for f in (self._stdout, self._stderr):
            f.seek(0)
            outputs.append(f.read())
        args = self.proc.args
        return subprocess.CompletedProcess(args, self.proc.returncode, *outputs), self.ended - self.started

    def stop(self) -> None:
        """End the demo if it still runs (a session stopped early), with the workers it started."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self._signal_group(signal.SIGKILL)  # what is left of it, e.g. idle prepare workers
            self.proc.wait()
        self._stdout.close()
        self._stderr.close()

    def _signal_group(self, sig: int) -> None:
        try:  # the demo leads its own process group (start_new_session)
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session", autouse=True)
def background_demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The quick demo, started at the session's first test when a selected test uses ``demo_run``."""
    if not any(_uses_demo(item) for item in request.session.items):
        yield None
        return
    demo = BackgroundDemo(tmp_path_factory.mktemp("demo") / "demo-output")
    yield demo
    demo.stop()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """Every test leaves the process's Ctrl-C and SIGTERM handlers and its blocked-signal mask as it found
    them: code that takes over a stop signal must hand it back, or a later test's (or a user's library
    caller's) Ctrl-C silently does nothing."""
    before = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    after = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    mask_after = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    for sig, handler in before.items():  # put them back so one leak fails one test, not every later one
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    changed = [f"{signal.Signals(s).name}: {before[s]!r} -> {after[s]!r}" for s in _STOP_SIGNALS
               if after[s] != before[s]]
    assert not changed, "the test left stop-signal handlers changed: " + "; ".join(changed)
    assert mask_after == mask, f"the test left signals blocked: {sorted(mask_after - mask)}"
