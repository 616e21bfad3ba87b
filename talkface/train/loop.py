"""One training loop for every stage, on Lightning Fabric (CPU, one GPU, DDP across GPUs and nodes).

A *stage* (landmarks, blinks, texture) supplies its models, optimisers, datasets, the training step,
validation and image grids; :func:`run_training` does the rest: seeding, device placement, precision,
a deterministic data order, checkpoints every ``ckpt_every`` steps and at the end, exact resume,
TensorBoard scalars and images, rich progress with losses and samples/s.

Why the data order is a pure function of (seed, step): the sampler draws one permutation per epoch
from ``seed + epoch`` and cuts the concatenated permutations into global batches, rank r taking its
slice. Resuming at step k therefore continues with exactly the batches an uninterrupted run would have
seen, without replaying the loader. Items that need randomness (a random identity frame, say) get it
from :meth:`Stage` dataset ``getitem_seeded(index, rng)`` with ``rng`` seeded by (seed, stream
position), so they do not depend on worker processes either.

Checkpoints (``<out>/checkpoints/last.pt``, ``best.pt``, ``step_XXXXXXX.pt`` and ``checkpoint.json``)
are written and read by the checkpoints contract, :mod:`talkface.store.checkpoints`; the ``.pt`` files
are plain dicts readable with ``torch.load`` and no Fabric::

    {"stage", "config", "models": {name: state_dict}, "optimizers": {name: state_dict},
     "step", "seed", "talkface_version", "dataset": {...}, "extra": {...}, "rng": {...},
     "best_score", "budget": {"max_steps", "steps", "train_seconds"}, "settings": {...},
     "provenance": {...}}

(``budget`` also holds ``pending`` and ``interrupted_by``, see below.)

Ctrl-C (SIGINT) or SIGTERM: the step in progress finishes (a validation or image grid in progress is
abandoned), ``last.pt`` is written as an exact-resume checkpoint whose ``budget.pending`` names the
per-step work (validation, images, the periodic checkpoint) that step still owed, and
:class:`TrainingInterrupted` is raised; ``--resume`` does that work first, so an interrupted and resumed
run equals an uninterrupted one bit for bit. A second signal stops at once, keeping the last good files
(their writes are atomic). With a ``deadline`` (the all-stages run's wall-clock budget) the loop stops
when one more step, the work due at it and the final validation and save would not fit, by the
durations it measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shlex
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from talkface import __version__
from talkface.store import checkpoints
from talkface.train.settings import TrainSettings, parse_devices  # noqa: F401 - re-exported
from talkface.utils import atomic
from talkface.utils.progress import console, make_progress
from talkface.utils.provenance import provenance

# -------------------------------------------------------------------------------------------------
# the stage interface


@dataclass
class TrainContext:
    """What a stage's step sees: Fabric, the wrapped models and optimisers, the step counter."""

    fabric: Any
    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    settings: TrainSettings
    step: int = 0
    best_score: float = math.inf  # lowest selection score seen at a validation (see Stage.selection_score)
    train_seconds: float = 0.0  # wall time spent training, summed over resumed runs
    stopped_by: str | None = None  # "steps" or "time" once the run has ended


class Stage(ABC):
    """One trainable stage. ``run_training`` calls, in order: ``setup``, ``build_models``,
    ``build_optimizers``, ``train_dataset``; then ``training_step`` per batch and ``validate`` /
    ``images`` at intervals."""

    name: str = "stage"

    @abstractmethod
    def setup(self, settings: TrainSettings, resume_state: dict[str, Any] | None) -> None:
        """Read data and fix the config; on resume, ``resume_state`` is the checkpoint being resumed."""

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """The stage's config dataclass as a dict (saved in every checkpoint)."""

    @abstractmethod
    def build_models(self) -> dict[str, torch.nn.Module]:
        """Fresh models (called after seeding, so the initial weights follow the seed)."""

    @abstractmethod
    def build_optimizers(self, models: dict[str, torch.nn.Module], settings: TrainSettings
                         ) -> dict[str, torch.optim.Optimizer]:
        """Optimisers keyed like the models they update; a model with no optimiser is frozen."""

    @abstractmethod
    def train_dataset(self) -> Dataset:
        """Map-style dataset; deterministic per index, or with ``getitem_seeded(index, rng)``."""

    @abstractmethod
    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        """One optimisation step (zero_grad, ``ctx.fabric.backward``, ``opt.step``); returns losses."""

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        """Validation numbers on the split's validation part (empty: no validation)."""
        return {}

    def images(self, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """Image grids for TensorBoard: name -> (N, 3, H, W) float in [0, 1]."""
        return {}

    def dataset_info(self) -> dict[str, Any]:
        """Where the data came from (root, the prepared dataset's settings)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Anything else the checkpoint must carry (tensors or plain data)."""
        return {}

    def selection_score(self, metrics: dict[str, float]) -> float | None:
        """Model selection: a score (lower is better) from validation metrics, or None for none.

        When a stage defines one, the loop also writes ``best.pt``: the checkpoint of the validation with
        the lowest score so far (its loaders prefer it). Stages whose last weights are best return None.
        """
        return None

    #: what :meth:`selection_score` measures, in words (recorded in checkpoint.json beside ``best.pt``)
    selection_name: str = ""


# -------------------------------------------------------------------------------------------------
# deterministic data order


class StreamBatchSampler(Sampler[list[int]]):
    """Endless batches of stream positions, a pure function of (seed, start step, rank).

    Stream position p refers to item ``perm_{p // n}[p % n]`` where ``perm_e`` is the permutation drawn
    from ``seed + e``; the dataset wrapper :class:`StreamDataset` resolves it.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if n_items < 1:
            raise ValueError("the training dataset is empty")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.world_size
        step = self.start_step
        while True:
            first = step * global_batch + self.rank * self.batch_size
            yield list(range(first, first + self.batch_size))
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number for its repr
        return 2**62


class StreamDataset(Dataset):
    """Resolve stream positions to items of ``base`` (see :class:`StreamBatchSampler`)."""

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base, self.seed = base, seed
        self.n = len(base)  # type: ignore[arg-type]
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=gen).numpy()
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, position: int) -> Any:
        epoch, offset = divmod(int(position), self.n)
        index = int(self._permutation(epoch)[offset])
        getter = getattr(self.base, "getitem_seeded", None)
        if getter is not None:
            return getter(index, np.random.default_rng([self.seed, int(position)]))
        return self.base[index]


# -------------------------------------------------------------------------------------------------
# RNG state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -------------------------------------------------------------------------------------------------
# checkpoints


def _save_checkpoint(fabric: Any, stage: Stage, ctx: TrainContext, settings: TrainSettings,
                     names: tuple[str, ...] | None = None, loop: dict[str, Any] | None = None) -> None:
    """Write ``last.pt`` (+ ``step_XXXXXXX.pt``), or the given file names, and ``checkpoint.json``,
    from rank 0. ``loop``: the loop's own state, kept in ``budget`` (``pending``: the work the step still
    owes, done first on resume; ``interrupted_by``: the signal that stopped the run)."""
    if names is None:
        names = ("last.pt", f"step_{ctx.step:07d}.pt") if settings.keep_step_checkpoints else ("last.pt",)
    if fabric.is_global_zero:
        state = {
            "stage": stage.name,
            "config": stage.config_dict(),
            "models": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()}
                       for k, m in ctx.models.items()},
            "optimizers": {k: o.state_dict() for k, o in ctx.optimizers.items()},
            "step": ctx.step,
            "seed": settings.seed,
            "talkface_version": __version__,
            "dataset": stage.dataset_info(),
            "extra": stage.extra_state(),
            "rng": rng_state(),
            "best_score": ctx.best_score,
            "budget": {"max_steps": settings.max_steps, "max_seconds": settings.max_seconds,
                       "steps": ctx.step, "train_seconds": round(ctx.train_seconds, 3),
                       "stopped_by": ctx.stopped_by, **(loop or {"pending": []})},
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
            "provenance": provenance(torch=torch.__version__, world_size=fabric.world_size),
        }
        best = None
        if checkpoints.BEST in names:
            best = checkpoints.BestInfo(file=checkpoints.BEST, step=ctx.step, score=ctx.best_score,
                                        score_name=stage.selection_name)
        checkpoints.save_checkpoint(settings.checkpoint_dir, state, names, best=best,
                                    selects_best=type(stage).selection_score is not Stage.selection_score)
    fabric.barrier()


# -------------------------------------------------------------------------------------------------
# interrupts and the work each step owes

VALIDATE, IMAGES, CHECKPOINT = "validate", "images", "checkpoint"


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM.

    ``saved``: the exact-resume checkpoint written at ``step``; None when a second signal stopped the run
    at once (then :meth:`last_good` names the newest complete ``last.pt``, if any). ``exit_code``: 128 +
    the signal's number (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, stage: str, signum: int, step: int, saved: Path | None, checkpoint_dir: Path) -> None:
        self.stage, self.signum, self.step, self.saved = stage, int(signum), step, saved
        self.checkpoint_dir = Path(checkpoint_dir)
        super().__init__(f"{stage}: {self.signal_name} at step {step}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def last_good(self) -> tuple[Path, int] | None:
        """The complete ``last.pt`` (and its step) that a run stopped at once left, if any."""
        try:
            meta = checkpoints.read_meta(self.checkpoint_dir)
        except checkpoints.CheckpointError:
            return None
        entry = meta.files.get(checkpoints.LAST) if meta is not None else None
        return (self.checkpoint_dir / checkpoints.LAST, entry.step) if entry is not None else None

    def sentence(self, resume: str, restart: str | None = None) -> str:
        """One sentence for the user: what stopped where, what was saved, and ``resume``: the command that
        continues (``restart``: the one that starts again when nothing was ever saved)."""
        what = f"{self.stage} stopped by {self.signal_name} at step {self.step}"
        if self.saved is not None:
            return f"{what}: saved an exact-resume checkpoint to {self.saved}; continue with: {resume}"
        good = self.last_good()
        if good is not None:
            return (f"{what}, at once (a second signal), without saving that step; the last good checkpoint "
                    f"is {good[0]} (step {good[1]}): continue from it with: {resume}")
        return (f"{what}, at once (a second signal), before any checkpoint was saved: start again with: "
                f"{restart or resume}")


class _StopNow(KeyboardInterrupt):
    """A second signal: stop at once (atomic writes keep the last good files)."""


class _Abandon(BaseException):
    """A first signal during a validation or image grid: abandon it; the checkpoint marks it pending."""


class _Interrupts:
    """SIGINT/SIGTERM handlers for the loop's lifetime (main thread only). The first signal asks the loop
    to stop at the next safe point (and abandons a validation or image grid in progress, when
    ``allow_abandon``); a second one raises :class:`_StopNow` wherever the program is."""

    def __init__(self, fabric: Any, allow_abandon: bool) -> None:
        self.fabric, self.allow_abandon = fabric, allow_abandon
        self.signum: int | None = None
        self._abandonable = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise _StopNow()
        self.signum = signum
        if self._abandonable:
            self._abandonable = False
            raise _Abandon()

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """Work that a first signal abandons; it must leave no trace until the block has finished."""
        self._abandonable = self.allow_abandon
        try:
            yield
        finally:
            self._abandonable = False

    def requested(self) -> bool:
        """Whether to stop now; every rank takes rank 0's answer (they stop at the same step)."""
        if self.fabric.world_size > 1:
            signum = self.fabric.broadcast(self.signum, src=0)
            if signum is not None and self.signum is None:
                self.signum = signum
            return signum is not None
        return self.signum is not None


def _worker_ignores_stops(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process (a terminal's Ctrl-C reaches the whole process
    group): it finishes its step and saves, and the workers end with it. SIGTERM keeps its default: the
    DataLoader (and Python's exit) stop workers with it, so ignoring it would hang the process at exit; a
    worker killed by a group SIGTERM mid-step is handled by the loop, which saves anyway."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _duties(step: int, settings: TrainSettings, is_last: bool) -> list[str]:
    """The work owed after optimisation step ``step``, in order."""
    out = []
    if step % settings.val_every == 0 or is_last:
        out.append(VALIDATE)
    if step % settings.image_every == 0 or is_last:
        out.append(IMAGES)
    if step % settings.ckpt_every == 0 or is_last:
        out.append(CHECKPOINT)
    return out


@dataclass
class _Durations:
    """What the loop has measured on its clock: optimisation steps and the last run of each duty.
    ``validation_steps``: until a validation has been timed, one is taken to cost that many steps."""

    validation_steps: float = 0.0
    step_total: float = 0.0
    steps: int = 0
    duty: dict[str, float] = field(default_factory=dict)

    def cost(self, duty: str, step_s: float) -> float:
        if duty == VALIDATE and duty not in self.duty:
            return self.validation_steps * step_s
        return self.duty.get(duty, 0.0)

    def fits_another_step(self, now: float, deadline: float, due: list[str]) -> bool:
        """Whether the work due now, one more step, and then the final validation, images and save all
        end by ``deadline`` (unmeasured images and saves count as 0 s)."""
        step_s = self.step_total / max(self.steps, 1)
        tail = sum(self.cost(d, step_s) for d in (VALIDATE, IMAGES, CHECKPOINT))
        return now + sum(self.cost(d, step_s) for d in due) + step_s + tail <= deadline


# -------------------------------------------------------------------------------------------------
# the loop


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    last_losses: dict[str, float] = field(default_factory=dict)
    last_validation: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = float("nan")
    stopped_by: str | None = None  # "steps" (max_steps reached) or "time" (max_seconds or deadline)
    val_is_train: bool = False  # validation ran on the training clip(s): the dataset held none out


def make_fabric(settings: TrainSettings) -> Any:
    from lightning.fabric import Fabric

    accelerator = settings.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    precision = settings.precision or ("bf16-mixed" if accelerator in ("cuda", "gpu") else "32-true")
    return Fabric(accelerator=accelerator, devices=parse_devices(settings.devices),
                  num_nodes=settings.num_nodes, precision=precision, strategy=settings.strategy)


def run_training(stage: Stage, settings: TrainSettings, fabric: Any = None,
                 quiet: bool = False, progress: Any = None, deadline: float | None = None,
                 clock: Callable[[], float] = time.monotonic, validation_steps: float = 0.0) -> TrainResult:
    """Train ``stage`` up to ``settings.max_steps`` (or until ``settings.max_seconds`` of training time,
    summed over resumed runs, are spent); resume from ``last.pt`` when ``settings.resume``.

    ``progress``: a started rich Progress to add this stage's bar to (one view for several stages).
    ``deadline``: a time on ``clock`` by which the run must have validated and saved its last step
    (stopped_by "time"; a fresh run still takes one step); ``validation_steps``: what one validation is
    taken to cost, in training steps, until one has been timed. SIGINT/SIGTERM: an exact-resume
    checkpoint, then :class:`TrainingInterrupted` (see the module's docstring).
    """
    fabric = fabric or make_fabric(settings)
    fabric.launch()
    last_path = settings.checkpoint_dir / checkpoints.LAST
    resume_state = None
    if settings.resume:
        if not last_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
        resume_state = checkpoints.load(last_path, stage=stage.name).state
    elif last_path.exists():
        raise FileExistsError(f"{settings.out_dir} already holds a run ({last_path}): pass --resume to "
                              "continue it, or choose another --out")

    fabric.seed_everything(settings.seed, workers=True, verbose=False)
    stage.setup(settings, resume_state)
    models = stage.build_models()
    optimizers = stage.build_optimizers(models, settings)
    start_step = 0
    if resume_state is not None:
        for k, m in models.items():
            m.load_state_dict(resume_state["models"][k])
        for k, o in optimizers.items():
            o.load_state_dict(resume_state["optimizers"][k])
        start_step = int(resume_state["step"])

    wrapped_models: dict[str, torch.nn.Module] = {}
    wrapped_opts: dict[str, torch.optim.Optimizer] = {}
    for k, m in models.items():
        if k in optimizers:
            wrapped_models[k], wrapped_opts[k] = fabric.setup(m, optimizers[k])
        elif not any(p.requires_grad for p in m.parameters()):
            # frozen and updated by the stage itself (a weight average): only moved to the device, since
            # DDP refuses a module with nothing to train and there is nothing to synchronise
            wrapped_models[k] = m.to(fabric.device)
        else:
            wrapped_models[k] = fabric.setup_module(m)
    ctx = TrainContext(fabric=fabric, models=wrapped_models, optimizers=wrapped_opts, settings=settings,
                       step=start_step)
    if resume_state is not None:
        ctx.best_score = float(resume_state.get("best_score", math.inf))
        ctx.train_seconds = float((resume_state.get("budget") or {}).get("train_seconds", 0.0))

    dataset = StreamDataset(stage.train_dataset(), settings.seed)
    sampler = StreamBatchSampler(len(dataset), settings.batch_size, settings.seed, start_step,
                                 fabric.global_rank, fabric.world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=settings.num_workers,
                        persistent_workers=False, pin_memory=False, worker_init_fn=_worker_ignores_stops)
    # Creating the iterator draws a base seed from the torch RNG: do it (eagerly: a plain DataLoader, not
    # Fabric's lazy wrapper) before restoring the RNG state, so a resumed run's random stream continues
    # exactly where the saved run's stopped. Batches are moved to the device by hand below.
    batches = iter(loader)
    if resume_state is not None:
        set_rng_state(resume_state["rng"])

    writer = None
    if fabric.is_global_zero:
        from torch.utils.tensorboard import SummaryWriter

        settings.out_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(log_dir=str(settings.log_dir))
        atomic.write_json(settings.out_dir / "run.json", {
            "stage": stage.name, "config": stage.config_dict(), "dataset": stage.dataset_info(),
            "settings": asdict(settings), **provenance(torch=torch.__version__),
        })
        if not quiet:
            from rich.markup import escape

            console.print(f"[bold]{stage.name}[/bold]: " + escape(
                f"checkpoints -> {settings.checkpoint_dir}, TensorBoard -> {settings.log_dir} "
                f"(tensorboard --logdir {shlex.quote(str(settings.log_dir))})"), soft_wrap=True)

    result = TrainResult(out_dir=settings.out_dir, step=start_step)
    samples_per_step = settings.batch_size * fabric.world_size
    show = fabric.is_global_zero and not quiet and progress is None
    progress = progress if progress is not None else make_progress()
    task = progress.add_task(stage.name, total=settings.max_steps, completed=start_step, info="")
    val_is_train = result.val_is_train = bool(stage.dataset_info().get("val_is_train"))
    measured = _Durations(validation_steps)
    # DDP ranks must run the same collectives, so only a single process abandons a validation part-way
    interrupts = _Interrupts(fabric, allow_abandon=fabric.world_size == 1)
    pending = list(((resume_state or {}).get("budget") or {}).get("pending") or [])

    def do(duty: str) -> None:
        started = clock()
        if duty == VALIDATE:
            result.last_validation = _validate(stage, ctx, writer, settings, interrupts, val_is_train)
            score = stage.selection_score(result.last_validation)
            if score is not None and math.isfinite(score) and score < ctx.best_score:
                ctx.best_score = score
                _save_checkpoint(fabric, stage, ctx, settings, names=("best.pt",))
        elif duty == IMAGES:
            if writer is not None:
                _log_images(stage, ctx, writer, interrupts)
        else:
            _save_checkpoint(fabric, stage, ctx, settings)
        measured.duty[duty] = clock() - started

    def stop(rest: list[str], saved_already: bool) -> None:
        """Save ``last.pt`` with the work still owed (unless the step's own save just wrote it) and stop."""
        assert interrupts.signum is not None
        if not saved_already:
            _save_checkpoint(fabric, stage, ctx, settings, names=(checkpoints.LAST,),
                             loop={"pending": rest,
                                   "interrupted_by": signal.Signals(interrupts.signum).name})
        raise TrainingInterrupted(stage.name, interrupts.signum, ctx.step,
                                  settings.checkpoint_dir / checkpoints.LAST, settings.checkpoint_dir)

    def work(duties: list[str]) -> None:
        """The step's duties in order; on a signal, stop with the rest pending."""
        for i, duty in enumerate(duties):
            if interrupts.requested():
                stop(duties[i:], saved_already=False)
            try:
                do(duty)
            except _Abandon:
                stop(duties[i:], saved_already=False)
        if interrupts.requested():
            stop([], saved_already=bool(duties) and duties[-1] == CHECKPOINT)

    t0, steps_timed = time.perf_counter(), 0
    seconds_before = ctx.train_seconds
    try:
        with interrupts:
            if show:
                progress.start()
            if pending:  # the work an interrupted step still owed, first
                work(pending)
            # A resumed run may have nothing left to do; a fresh one always takes (and saves) a step.
            ctx.stopped_by = _stop_reason(ctx, settings) if ctx.step > 0 else None
            if ctx.stopped_by is None and ctx.step > 0 and deadline is not None and clock() >= deadline:
                ctx.stopped_by = "time"
            while ctx.stopped_by is None:
                started = clock()
                try:
                    batch = fabric.to_device(next(batches))
                except Exception:
                    if interrupts.signum is not None:  # a worker that died of the same stop: nothing of
                        stop([], saved_already=False)  # this step has happened yet, so step k is whole
                    raise
                losses = stage.training_step(ctx, batch)
                ctx.step += 1
                steps_timed += 1
                measured.step_total += clock() - started
                measured.steps += 1
                result.last_losses = {k: float(v) for k, v in losses.items()}
                elapsed = time.perf_counter() - t0
                ctx.train_seconds = seconds_before + elapsed
                result.samples_per_s = steps_timed * samples_per_step / max(elapsed, 1e-9)
                if writer is not None and (ctx.step % settings.log_every == 0
                                           or ctx.step >= settings.max_steps):
                    for k, v in result.last_losses.items():
                        writer.add_scalar(f"train/{k}", v, ctx.step)
                    writer.add_scalar("train/samples_per_s", result.samples_per_s, ctx.step)
                ctx.stopped_by = _stop_reason(ctx, settings)
                if ctx.stopped_by is None and deadline is not None and not measured.fits_another_step(
                        clock(), deadline, _duties(ctx.step, settings, is_last=False)):
                    ctx.stopped_by = "time"
                if (settings.max_seconds is not None or deadline is not None) and fabric.world_size > 1:
                    ctx.stopped_by = fabric.broadcast(ctx.stopped_by, src=0)  # every rank stops together
                work(_duties(ctx.step, settings, is_last=ctx.stopped_by is not None))
                info = " ".join(f"{k}={v:.4g}" for k, v in result.last_losses.items())
                progress.update(task, completed=ctx.step, info=f"{info} {result.samples_per_s:.1f} samples/s")
    except _StopNow:
        stopped = TrainingInterrupted(stage.name, interrupts.signum or signal.SIGINT, ctx.step, None,
                                      settings.checkpoint_dir)
        good = stopped.last_good() if fabric.is_global_zero else None
        if good is not None and good[1] == ctx.step:  # the second signal came as that step's save ended
            stopped.saved = good[0]
        raise stopped from None
    finally:
        if show:
            progress.stop()
        if writer is not None:
            writer.close()
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:  # the sampler is endless: stop the workers now, not at interpreter exit
            shutdown()
    result.step = ctx.step
    result.stopped_by = ctx.stopped_by
    return result


def _stop_reason(ctx: TrainContext, settings: TrainSettings) -> str | None:
    if ctx.step >= settings.max_steps:
        return "steps"
    if settings.max_seconds is not None and ctx.train_seconds >= settings.max_seconds:
        return "time"
    return None


def _validate(stage: Stage, ctx: TrainContext, writer: Any, settings: TrainSettings,
              interrupts: _Interrupts | None = None, val_is_train: bool = False) -> dict[str, float]:
    # Validation and images must not move the training RNG streams, or a run's future would depend on
    # when it validated (a resumed run validates at its resume point too).
    saved = rng_state()
    for m in ctx.models.values():
        m.eval()
    try:
        with torch.no_grad(), (interrupts.abandonable() if interrupts else contextlib.nullcontext()):
            metrics = {k: float(v) for k, v in stage.validate(ctx).items()}
    finally:
        for m in ctx.models.values():
            m.train()
        set_rng_state(saved)
    if metrics and ctx.fabric.is_global_zero:
        if writer is not None:
            for k, v in metrics.items():
                if math.isfinite(v):
                    writer.add_scalar(f"val/{k}", v, ctx.step)
        line = {"step": ctx.step, "stage": stage.name, "seed": settings.seed, "talkface_version": __version__,
                **metrics}
        if val_is_train:  # the dataset has no clip to hold out (talkface.train.data.training_parts)
            line["val_is_train"] = True
        with open(settings.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
    return metrics


def _log_images(stage: Stage, ctx: TrainContext, writer: Any, interrupts: _Interrupts | None = None) -> None:
    saved = rng_state()
    for m in ctx.models.values():
        m.eval()
    try:
        with torch.no_grad(), (interrupts.abandonable() if interrupts else contextlib.nullcontext()):
            grids = stage.images(ctx)
    finally:
        for m in ctx.models.values():
            m.train()
        set_rng_state(saved)
    for name, images in grids.items():
        writer.add_images(name, images.detach().float().clamp(0, 1).cpu(), ctx.step, dataformats="NCHW")
