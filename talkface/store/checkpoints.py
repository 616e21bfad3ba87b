"""The checkpoints contract: a stage's weights files and the small JSON beside them.

A run folder ``OUT/`` of ``talkface train <stage>`` holds::

    OUT/checkpoints/last.pt          the newest state (what --resume continues)
    OUT/checkpoints/best.pt          the validation with the lowest selection score (stages that select)
    OUT/checkpoints/step_XXXXXXX.pt  snapshots every --ckpt-every steps
    OUT/checkpoints/checkpoint.json  CheckpointMeta: stage, step, config, dataset (info + protocol), seed,
                                     training budget (steps, wall time), talkface version, which file is
                                     best by which score at which step, and each file's SHA-256

The ``.pt`` files are plain dicts readable with ``torch.load`` (``stage, config, models, optimizers,
step, seed, talkface_version, dataset, extra, rng, best_score, budget, settings, provenance``). The
JSON is rewritten atomically after every save, so finding and checking stages reads names, never
weights. This module is the only reader and writer of both:

- :func:`find_stage` / :func:`list_runs`: a stage's run under a folder such as ``runs/``, from the JSON
  files (an old run without a sidecar is recognised by loading its ``last.pt`` once, with a note).
- :meth:`StageRun.weights_path`: the last/best policy, in this one place: ``best.pt`` when the stage
  selected one, else ``last.pt``.
- :func:`load_checkpoint` / :meth:`StageRun.load`: a truncated or foreign file is a
  :class:`CheckpointError` whose message is one sentence, never a zip-reader traceback, naming the
  newest intact ``step_*.pt`` beside a damaged file and how to use it; the loaded
  checkpoint carries the SHA-256 of the bytes that were actually loaded (:attr:`LoadedCheckpoint.sha256`)
  for provenance.
- :func:`load_stage`: a stage from a ``.pt`` file or from a folder (the stage loaders use it).
- :func:`save_checkpoint`: atomic weights files, then the sidecar (a stop part-way keeps the old files).

Usage::

    from talkface.store.checkpoints import CheckpointError, find_stage

    try:
        run = find_stage("runs/", "blinks")         # reads runs/*/checkpoints/checkpoint.json only
        print(run.meta.step, run.weights_path())     # runs/blink/checkpoints/best.pt (blinks select)
        ckpt = run.load()                            # LoadedCheckpoint: .state, .path, .sha256
        model.load_state_dict(ckpt.state["models"]["blinks"])
        provenance["checkpoints"]["blinks"] = ckpt.provenance()   # names the file that was loaded
    except CheckpointError as exc:                    # includes "no 'blinks' run under runs/"
        raise SystemExit(f"error: {exc}")

torch is imported only when weights are read or written, so the finders cost a few JSON reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shlex
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from talkface import __version__
from talkface.utils import atomic
from talkface.utils.paths import PathUnder

log = logging.getLogger("talkface.store.checkpoints")

CHECKPOINTS_DIR = "checkpoints"  # OUT/checkpoints/ of a run folder OUT
SIDECAR = "checkpoint.json"
LAST = "last.pt"
BEST = "best.pt"
FORMAT = 1  # version of checkpoint.json's layout


class CheckpointError(ValueError):
    """A checkpoint (or a stage's run) that cannot be used; ``str()`` is one sentence saying what to do."""


class StageNotFound(CheckpointError, FileNotFoundError):
    """No run of the asked-for stage under a folder (also a ``FileNotFoundError``)."""

    def __str__(self) -> str:  # OSError would format its args as a tuple
        return str(self.args[0]) if self.args else ""


# -------------------------------------------------------------------------------------------------
# the sidecar


@dataclass
class FileEntry:
    """One weights file of a run: the step it holds and its SHA-256."""

    step: int
    sha256: str
    bytes: int
    written: float = 0.0  # unix time

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileEntry:
        return cls(step=int(d["step"]), sha256=str(d["sha256"]), bytes=int(d.get("bytes", 0)),
                   written=float(d.get("written", 0.0)))


@dataclass
class BestInfo:
    """Which file is ``best`` and why: the lowest ``score`` (``score_name``) seen at a validation."""

    file: str
    step: int
    score: float
    score_name: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BestInfo:
        return cls(file=str(d.get("file", BEST)), step=int(d["step"]), score=float(d["score"]),
                   score_name=str(d.get("score_name", "")))


@dataclass
class CheckpointMeta:
    """``OUT/checkpoints/checkpoint.json``: everything about a run but its weights."""

    stage: str
    step: int  # the step of last.pt (the run's progress)
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)  # root, protocol, dataset info, clip counts
    seed: int = 0
    budget: dict[str, Any] = field(default_factory=dict)  # max_steps, steps, train_seconds
    settings: dict[str, Any] = field(default_factory=dict)
    talkface_version: str = __version__
    selects_best: bool = False  # the stage defines a selection score (best.pt once one is finite)
    best: BestInfo | None = None
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["best"] = asdict(self.best) if self.best is not None else None
        d["files"] = {k: asdict(v) for k, v in sorted(self.files.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointMeta:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["best"] = BestInfo.from_dict(d["best"]) if d.get("best") else None
        values["files"] = {k: FileEntry.from_dict(v) for k, v in (d.get("files") or {}).items()}
        return cls(**values)

    @property
    def protocol(self) -> str | None:
        return self.dataset.get("protocol")

    def weights_name(self) -> str:
        """The last/best policy: ``best.pt`` when the stage selected one, else ``last.pt``."""
        if self.best is not None and self.best.file in self.files:
            return self.best.file
        return LAST


def read_meta(checkpoint_dir: str | os.PathLike) -> CheckpointMeta | None:
    """The sidecar of a checkpoints folder, None when there is none (an old run)."""
    path = Path(checkpoint_dir) / SIDECAR
    try:
        return CheckpointMeta.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a readable talkface checkpoint sidecar ({exc}): delete it "
                              "to fall back to the weights files, or retrain") from exc


def write_meta(checkpoint_dir: str | os.PathLike, meta: CheckpointMeta) -> None:
    atomic.write_json(Path(checkpoint_dir) / SIDECAR, meta.to_dict())


# -------------------------------------------------------------------------------------------------
# reading and writing weights


@dataclass
class LoadedCheckpoint:
    """A checkpoint's contents plus the file it came from and that file's SHA-256 as loaded."""

    path: Path
    sha256: str
    state: dict[str, Any]
    meta: CheckpointMeta | None = None

    @property
    def stage(self) -> str:
        return str(self.state["stage"])

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))

    def provenance(self) -> dict[str, Any]:
        """What generation records: the path and SHA-256 of the file that was loaded, and why that one."""
        selected = "last"
        best = self.meta.best if self.meta is not None else None
        if best is not None and self.path.name == best.file:
            selected = f"best by {best.score_name or 'selection score'} = {best.score:.6g} (step {best.step})"
        return {"path": str(self.path), "sha256": self.sha256, "stage": self.stage, "step": self.step,
                "selected": selected}


def _describe(path: Path) -> str:
    """A short display name: ``runs/lm/checkpoints/last.pt`` style (relative when under the cwd)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    stage: str | None = None) -> dict[str, Any]:
    """The state dict of a talkface ``.pt`` file; :class:`CheckpointError` (one sentence) when it is
    missing, truncated, foreign, or (with ``stage``) another stage's."""
    return load(path, map_location, stage).state


def load(path: str | os.PathLike, map_location: Any = "cpu", stage: str | None = None,
         meta: CheckpointMeta | None = None) -> LoadedCheckpoint:
    """Read ``path`` once into memory, hash those bytes, and unpickle them (our own files hold RNG
    states, so not ``weights_only``)."""
    import torch

    path = Path(path)
    name = _describe(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StageNotFound(f"no checkpoint at {name}: train the stage first (`talkface train ...`)"
                            ) from None
    except OSError as exc:
        raise CheckpointError(f"{name} cannot be read ({exc.strerror or exc})") from exc
    sha = hashlib.sha256(raw).hexdigest()
    try:
        state = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=False)
    except Exception as exc:  # zip reader, unpickler, EOF: all mean the same thing to the user
        raise CheckpointError(damaged_sentence(path, f"is truncated or not a talkface checkpoint "
                                                     f"({failure_reason(exc)})")) from exc
    if not isinstance(state, dict) or "stage" not in state or "models" not in state:
        raise CheckpointError(f"{name} is not a talkface checkpoint (no 'stage' and 'models' entries): "
                              "pass a file written by `talkface train`")
    if stage is not None and state["stage"] != stage:
        raise CheckpointError(f"{name} is a '{state['stage']}' checkpoint, not '{stage}'")
    return LoadedCheckpoint(path=path, sha256=sha, state=state, meta=meta)


#: the longest failure reason quoted in a damaged file's message (cut at a word, never inside one)
REASON_CHARS = 160
_STEP_FILE = re.compile(r"step_(\d+)\.pt")


def failure_reason(exc: BaseException) -> str:
    """An exception as a short clause: its first sentence of its first line, cut at a word boundary."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    first = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0].rstrip(".")
    if len(first) <= REASON_CHARS:
        return first
    return first[: first.rfind(" ", 0, REASON_CHARS)].rstrip(" ,;:") + " ..."


def intact_step_file(checkpoint_dir: str | os.PathLike, exclude: str | os.PathLike | None = None
                     ) -> tuple[Path, int] | None:
    """The newest ``step_*.pt`` in ``checkpoint_dir`` whose bytes are whole: its SHA-256 equals the one
    ``checkpoint.json`` records, or (not recorded) its zip archive passes its CRC check. Read only when
    a file is damaged, so its cost (hashing a few files) is paid on an error path only."""
    checkpoint_dir = Path(checkpoint_dir)
    try:
        meta = read_meta(checkpoint_dir)
    except CheckpointError:
        meta = None
    steps = sorted(((int(m.group(1)), p) for p in checkpoint_dir.glob("step_*.pt")
                    if (m := _STEP_FILE.fullmatch(p.name)) and (exclude is None or p != Path(exclude))),
                   reverse=True)
    for step, p in steps:
        entry = meta.files.get(p.name) if meta is not None else None
        try:
            if entry is not None:
                if hashlib.sha256(p.read_bytes()).hexdigest() == entry.sha256:
                    return p, step
            elif zipfile.is_zipfile(p):
                with zipfile.ZipFile(p) as z:
                    if z.testzip() is None:
                        return p, step
        except (OSError, zipfile.BadZipFile):
            continue
    return None


def damaged_sentence(path: Path, what: str) -> str:
    """One sentence: ``path`` ``what`` (e.g. "is truncated or ..."), and the newest intact ``step_*.pt``
    beside it with how to use it, else "retrain or restore it"."""
    name = _describe(path)
    found = intact_step_file(path.parent, exclude=path)
    if found is None:
        return f"{name} {what}, and no intact step_*.pt is beside it: retrain or restore it."
    step_file, step = found
    copy = f"`cp {shlex.quote(_describe(step_file))} {shlex.quote(name)}`"
    use = (f"copy it over {LAST} ({copy}) and rerun with --resume to continue from step {step}"
           if path.name == LAST else f"pass that file instead of {path.name}, or copy it over ({copy})")
    return f"{name} {what}; the newest intact checkpoint beside it is {step_file.name} (step {step}): {use}."


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the few milliseconds of a commit (renames and the sidecar), then deliver
    them: a stop never leaves new weights beside an old ``checkpoint.json``. Main thread only (elsewhere
    Python delivers no signals anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in held:
            signal.raise_signal(sig)


def save_checkpoint(checkpoint_dir: str | os.PathLike, state: dict[str, Any], names: tuple[str, ...],
                    best: BestInfo | None = None, selects_best: bool = False) -> CheckpointMeta:
    """Write ``state`` to each of ``names`` (atomically), then update ``checkpoint.json``.

    The sidecar keeps what earlier saves recorded (other files, the best file) and takes stage, config,
    dataset, seed, budget and settings from ``state``. ``best`` is given when ``best.pt`` is among
    ``names``.

    Stopped part-way (an exception, a second Ctrl-C), the folder keeps its previous files: the weights go
    to temporary siblings first, and only then are they renamed and the sidecar rewritten, with
    SIGINT/SIGTERM held for those few milliseconds (:func:`signals_deferred`).
    """
    import torch

    checkpoint_dir = Path(checkpoint_dir)
    buf = io.BytesIO()
    torch.save(state, buf)
    raw = buf.getvalue()
    sha = hashlib.sha256(raw).hexdigest()
    now = time.time()
    with contextlib.ExitStack() as pending:
        for name in names:  # each renamed onto its name when ``pending`` closes without an error
            pending.enter_context(atomic.atomic_path(checkpoint_dir / name)).write_bytes(raw)
        with signals_deferred():
            pending.close()
            meta = _update_meta(checkpoint_dir, state, names, sha, len(raw), now, best, selects_best)
    return meta


def _update_meta(checkpoint_dir: Path, state: dict[str, Any], names: tuple[str, ...], sha: str, size: int,
                 now: float, best: BestInfo | None, selects_best: bool) -> CheckpointMeta:
    try:
        meta = read_meta(checkpoint_dir)
    except CheckpointError:
        meta = None  # an unreadable sidecar is replaced
    step = int(state.get("step", 0))
    if meta is None or meta.stage != state["stage"]:
        meta = CheckpointMeta(stage=str(state["stage"]), step=step)
    for name in names:
        meta.files[name] = FileEntry(step=step, sha256=sha, bytes=size, written=now)
    meta.files = {k: v for k, v in meta.files.items() if (checkpoint_dir / k).exists()}
    if LAST in names or LAST not in meta.files:
        meta.step = step
    meta.config = state.get("config", {})
    meta.dataset = state.get("dataset", {})
    meta.seed = int(state.get("seed", 0))
    meta.budget = dict(state.get("budget") or {})
    meta.settings = state.get("settings", {})
    meta.talkface_version = str(state.get("talkface_version", __version__))
    meta.selects_best = bool(selects_best)
    if best is not None:
        meta.best = best
    write_meta(checkpoint_dir, meta)
    return meta


# -------------------------------------------------------------------------------------------------
# finding runs


@dataclass
class StageRun:
    """One run folder of one stage (``OUT/`` of ``talkface train``); ``meta`` None for an old run."""

    out_dir: Path
    stage: str
    meta: CheckpointMeta | None = None

    checkpoint_dir = PathUnder("out_dir", CHECKPOINTS_DIR)
    last_path = PathUnder("out_dir", CHECKPOINTS_DIR, LAST)
    best_path = PathUnder("out_dir", CHECKPOINTS_DIR, BEST)

    @property
    def step(self) -> int | None:
        return self.meta.step if self.meta is not None else None

    def weights_path(self) -> Path:
        """The file a consumer of the trained stage loads: ``best.pt`` when the stage selected one,
        else ``last.pt`` (the one place this policy lives)."""
        if self.meta is not None:
            return self.checkpoint_dir / self.meta.weights_name()
        return self.best_path if self.best_path.exists() else self.last_path  # old run: by presence

    def load(self, map_location: Any = "cpu", which: str | None = None) -> LoadedCheckpoint:
        """Load the policy's file (or ``which``: ``"last"``, ``"best"`` or a file name) as this stage.

        When the sidecar records the file's SHA-256 and the bytes differ, the file was cut short or
        replaced after training: a :class:`CheckpointError`.
        """
        name = {None: self.weights_path().name, "last": LAST, "best": BEST}.get(which, which)
        path = self.checkpoint_dir / str(name)
        ckpt = load(path, map_location, self.stage, self.meta)
        entry = self.meta.files.get(path.name) if self.meta is not None else None
        if entry is not None and entry.sha256 != ckpt.sha256:
            fresh = read_meta(self.checkpoint_dir)  # a save may have finished between our two reads
            entry = fresh.files.get(path.name) if fresh is not None else None
            if entry is not None and entry.sha256 != ckpt.sha256:
                raise CheckpointError(damaged_sentence(path, f"does not match the SHA-256 recorded in "
                                                             f"{SIDECAR} (changed after training)"))
            self.meta = ckpt.meta = fresh
        return ckpt

    def summary(self) -> str:
        if self.meta is None:
            return f"{self.stage} at {self.out_dir} (old run: no {SIDECAR})"
        best = f", best {self.meta.best.score:.4g} at step {self.meta.best.step}" if self.meta.best else ""
        return f"{self.stage} at {self.out_dir}: step {self.meta.step}{best}"


def _candidate_dirs(root: Path) -> list[Path]:
    """Checkpoint folders under ``root``: ``root`` itself (a checkpoints folder or a run folder) and
    run folders one or two levels down."""
    if root.name == CHECKPOINTS_DIR and root.is_dir():
        return [root]
    out = [root / CHECKPOINTS_DIR, *sorted(root.glob(f"*/{CHECKPOINTS_DIR}")),
           *sorted(root.glob(f"*/*/{CHECKPOINTS_DIR}"))]
    return [p for p in out if p.is_dir()]


def list_runs(root: str | os.PathLike) -> list[StageRun]:
    """Every stage run under ``root`` (``root``, ``root/*`` and ``root/*/*`` holding ``checkpoints/``)."""
    root = Path(root)
    runs = []
    for ckpt_dir in _candidate_dirs(root):
        meta = read_meta(ckpt_dir)
        if meta is not None:
            runs.append(StageRun(ckpt_dir.parent, meta.stage, meta))
            continue
        last = ckpt_dir / LAST
        if last.exists():  # an old run (before checkpoint.json): the stage is only in the weights
            log.info("%s has no %s (an old run): reading its stage from %s", ckpt_dir, SIDECAR, last)
            try:
                stage = load(last).stage
            except CheckpointError as exc:
                log.warning("skipping %s: %s", ckpt_dir, exc)
                continue
            runs.append(StageRun(ckpt_dir.parent, stage, None))
    return runs


def find_stage(root: str | os.PathLike, stage: str) -> StageRun:
    """The run of ``stage`` under ``root`` (e.g. ``runs/`` holding runs/lm, runs/blink, runs/tex, or one
    run folder); with several, the most recently saved. :class:`StageNotFound` when there is none."""
    root = Path(root)
    found = [r for r in list_runs(root) if r.stage == stage]
    if not found:
        others = sorted({r.stage for r in list_runs(root)})
        held = f" (it holds: {', '.join(others)})" if others else ""
        raise StageNotFound(f"no '{stage}' run under {root}{held}: run `talkface train {stage} --out "
                            f"{root}/<name>` first")
    if len(found) > 1:
        log.info("several '%s' runs under %s; using the most recently saved", stage, root)
    return max(found, key=_saved_time)


def _saved_time(run: StageRun) -> float:
    if run.meta is not None and run.meta.files:
        return max(e.written for e in run.meta.files.values())
    path = run.last_path
    return path.stat().st_mtime if path.exists() else 0.0


def load_stage(source: str | os.PathLike, stage: str, map_location: Any = "cpu") -> LoadedCheckpoint:
    """Load ``stage`` from ``source``: a ``.pt`` file (exactly that file, checked against the sidecar
    beside it when there is one), or a folder searched with :func:`find_stage` (the policy's file)."""
    source = Path(source)
    if source.is_dir():
        return find_stage(source, stage).load(map_location)
    meta = read_meta(source.parent) if source.parent.name == CHECKPOINTS_DIR else None
    if meta is not None and meta.stage == stage:
        return StageRun(source.parent.parent, stage, meta).load(map_location, which=source.name)
    return load(source, map_location, stage)
