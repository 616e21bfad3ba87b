"""Training settings and the shared ``train`` command-line options, without importing torch.

Kept apart from :mod:`talkface.models.fabric_loop` so that ``talkface --help`` and every other command
start without loading torch and Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

# -------------------------------------------------------------------------------------------------
# settings


@dataclass
class TrainSettings:
    """How to train (not what): shared by every stage, recorded in each checkpoint."""

    out_dir: Path
    max_steps: int = 2000
    batch_size: int = 16
    devices: str = "1"  # "1", "4", "0,1", "auto"
    num_nodes: int = 1
    accelerator: str = "auto"  # auto | cpu | gpu | cuda | mps
    precision: str | None = None  # None: "32-true" on CPU, "bf16-mixed" on GPU
    strategy: str = "auto"  # auto picks DDP when devices * nodes > 1
    seed: int = 0
    resume: bool = False
    ckpt_every: int = 500
    keep_step_checkpoints: bool = True
    log_every: int = 25
    val_every: int = 500
    image_every: int = 500
    num_workers: int = 0
    lr: float = 1e-3

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.max_steps < 1:
            raise ValueError("--max-steps must be >= 1")
        if self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def log_dir(self) -> Path:
        return self.out_dir / "tensorboard"


def parse_devices(devices: str) -> int | str | list[int]:
    """``"4"`` -> 4, ``"0,1"`` -> [0, 1], ``"auto"``/``"-1"`` unchanged (Fabric's own spellings)."""
    devices = str(devices).strip()
    if "," in devices:
        return [int(d) for d in devices.split(",") if d.strip()]
    if devices in ("auto", "-1"):
        return devices if devices == "auto" else -1
    return int(devices)


# -------------------------------------------------------------------------------------------------
# Shared Typer options. Every ``train`` command declares its parameters with these annotated types so
# all stages have identical flags; a command picks its own defaults, e.g.
#     def landmarks(data: DataOpt, out: OutOpt = Path("runs/lm"), max_steps: MaxStepsOpt = 3000, ...):
# and builds its settings with :func:`settings_from_cli`.

DataOpt = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Prepared dataset folder (output of `talkface prepare ...`: manifest.parquet, clips/, crops/).",
        exists=True,
        file_okay=False,
    ),
]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split",
        help="Split protocol the dataset was prepared with (seen | speaker-independent | ...). Training "
        "uses the manifest's 'train' clips, validation its 'val' clips; with no 'val' clips, a seeded "
        "10% of the training clips (logged).",
    ),
]
OutOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Run folder: checkpoints go to OUT/checkpoints (last.pt, step_XXXXXXX.pt), TensorBoard "
        "logs to OUT/tensorboard, validation numbers to OUT/metrics.jsonl.",
    ),
]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", help="Optimiser steps in total (a resumed run "
                                                               "continues up to this count).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Samples per device per step.")]
DevicesOpt = Annotated[
    str,
    typer.Option("--devices", help="Devices per node: a count ('4'), ids ('0,1') or 'auto'. >1 runs DDP."),
]
NodesOpt = Annotated[int, typer.Option("--num-nodes", help="Machines in a multi-node DDP run (launch with "
                                                            "torchrun or the Fabric launcher).")]
AcceleratorOpt = Annotated[str, typer.Option("--accelerator", help="auto | cpu | gpu.")]
PrecisionOpt = Annotated[
    str | None,
    typer.Option("--precision", help="Fabric precision; default 32-true on CPU, bf16-mixed on GPU."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds weights, data order and noise: same seed, "
                                                      "same run.")]
ResumeOpt = Annotated[
    bool,
    typer.Option("--resume/--no-resume", help="Continue from OUT/checkpoints/last.pt exactly (weights, "
                                              "optimiser, RNG states, data position)."),
]
CkptEveryOpt = Annotated[int, typer.Option("--ckpt-every", help="Write a checkpoint every N steps (and at "
                                                                 "the end).")]
LogEveryOpt = Annotated[int, typer.Option("--log-every", help="TensorBoard scalars every N steps.")]
ValEveryOpt = Annotated[int, typer.Option("--val-every", help="Validate every N steps (and at the end).")]
WorkersOpt = Annotated[int, typer.Option("--num-workers", help="DataLoader worker processes per device.")]
LrOpt = Annotated[float, typer.Option("--lr", help="Learning rate (Adam).")]


def settings_from_cli(**kwargs: Any) -> TrainSettings:
    """Build :class:`TrainSettings` from CLI keyword arguments, ignoring the ones it does not hold."""
    names = set(TrainSettings.__dataclass_fields__)
    values = {k: v for k, v in kwargs.items() if k in names}
    if "out" in kwargs:
        values["out_dir"] = kwargs["out"]
    return TrainSettings(**values)


def run_training(stage: Any, settings: TrainSettings) -> Any:
    """Import the training loop (torch, Lightning) only when a command really trains."""
    from talkface.models.fabric_loop import run_training as _run

    return _run(stage, settings)
