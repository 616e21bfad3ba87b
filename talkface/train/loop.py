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
"""

from __future__ import annotations

import json
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
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
                     names: tuple[str, ...] | None = None) -> None:
    """Write ``last.pt`` (+ ``step_XXXXXXX.pt``), or the given file names, and ``checkpoint.json``,
    from rank 0."""
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
                       "stopped_by": ctx.stopped_by},
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
# the loop


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    last_losses: dict[str, float] = field(default_factory=dict)
    last_validation: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = float("nan")
    stopped_by: str | None = None  # "steps" (max_steps reached) or "time" (max_seconds spent)


def make_fabric(settings: TrainSettings) -> Any:
    from lightning.fabric import Fabric

    accelerator = settings.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    precision = settings.precision or ("bf16-mixed" if accelerator in ("cuda", "gpu") else "32-true")
    return Fabric(accelerator=accelerator, devices=parse_devices(settings.devices),
                  num_nodes=settings.num_nodes, precision=precision, strategy=settings.strategy)


def run_training(stage: Stage, settings: TrainSettings, fabric: Any = None,
                 quiet: bool = False, progress: Any = None) -> TrainResult:
    """Train ``stage`` up to ``settings.max_steps`` (or until ``settings.max_seconds`` of training time,
    summed over resumed runs, are spent); resume from ``last.pt`` when ``settings.resume``.

    ``progress``: a started rich Progress to add this stage's bar to (one view for several stages).
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
                        persistent_workers=False, pin_memory=False)
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
            console.print(f"[bold]{stage.name}[/bold]: checkpoints -> {settings.checkpoint_dir}, "
                          f"TensorBoard -> {settings.log_dir} (tensorboard --logdir {settings.log_dir})")

    result = TrainResult(out_dir=settings.out_dir, step=start_step)
    samples_per_step = settings.batch_size * fabric.world_size
    show = fabric.is_global_zero and not quiet and progress is None
    progress = progress if progress is not None else make_progress()
    task = progress.add_task(stage.name, total=settings.max_steps, completed=start_step, info="")
    t0, steps_timed = time.perf_counter(), 0
    seconds_before = ctx.train_seconds
    try:
        if show:
            progress.start()
        # A resumed run may have nothing left to do; a fresh one always takes (and saves) a step.
        ctx.stopped_by = _stop_reason(ctx, settings) if ctx.step > 0 else None
        while ctx.stopped_by is None:
            batch = fabric.to_device(next(batches))
            losses = stage.training_step(ctx, batch)
            ctx.step += 1
            steps_timed += 1
            result.last_losses = {k: float(v) for k, v in losses.items()}
            elapsed = time.perf_counter() - t0
            ctx.train_seconds = seconds_before + elapsed
            result.samples_per_s = steps_timed * samples_per_step / max(elapsed, 1e-9)
            if writer is not None and (ctx.step % settings.log_every == 0 or ctx.step >= settings.max_steps):
                for k, v in result.last_losses.items():
                    writer.add_scalar(f"train/{k}", v, ctx.step)
                writer.add_scalar("train/samples_per_s", result.samples_per_s, ctx.step)
            ctx.stopped_by = _stop_reason(ctx, settings)
            if settings.max_seconds is not None and fabric.world_size > 1:  # every rank stops together
                ctx.stopped_by = fabric.broadcast(ctx.stopped_by, src=0)
            is_last = ctx.stopped_by is not None
            if ctx.step % settings.val_every == 0 or is_last:
                result.last_validation = _validate(stage, ctx, writer, settings)
                score = stage.selection_score(result.last_validation)
                if score is not None and math.isfinite(score) and score < ctx.best_score:
                    ctx.best_score = score
                    _save_checkpoint(fabric, stage, ctx, settings, names=("best.pt",))
            if writer is not None and (ctx.step % settings.image_every == 0 or is_last):
                _log_images(stage, ctx, writer)
            if ctx.step % settings.ckpt_every == 0 or is_last:
                _save_checkpoint(fabric, stage, ctx, settings)
            info = " ".join(f"{k}={v:.4g}" for k, v in result.last_losses.items())
            progress.update(task, completed=ctx.step, info=f"{info} {result.samples_per_s:.1f} samples/s")
    finally:
        if show:
            progress.stop()
        if writer is not None:
            writer.close()
    result.step = ctx.step
    result.stopped_by = ctx.stopped_by
    return result


def _stop_reason(ctx: TrainContext, settings: TrainSettings) -> str | None:
    if ctx.step >= settings.max_steps:
        return "steps"
    if settings.max_seconds is not None and ctx.train_seconds >= settings.max_seconds:
        return "time"
    return None


def _validate(stage: Stage, ctx: TrainContext, writer: Any, settings: TrainSettings) -> dict[str, float]:
    # Validation and images must not move the training RNG streams, or a run's future would depend on
    # when it validated (a resumed run validates at its resume point too).
    saved = rng_state()
    for m in ctx.models.values():
        m.eval()
    try:
        with torch.no_grad():
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
        with open(settings.out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
    return metrics


def _log_images(stage: Stage, ctx: TrainContext, writer: Any) -> None:
    saved = rng_state()
    for m in ctx.models.values():
        m.eval()
    try:
        with torch.no_grad():
            grids = stage.images(ctx)
    finally:
        for m in ctx.models.values():
            m.train()
        set_rng_state(saved)
    for name, images in grids.items():
        writer.add_images(name, images.detach().float().clamp(0, 1).cpu(), ctx.step, dataformats="NCHW")
