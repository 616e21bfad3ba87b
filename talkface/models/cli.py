"""``talkface train ...``: one command per stage, identical flags (fabric_loop's shared options)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from talkface.models import train_options as fl

TRAIN_HELP = (
    "Train the stages of Sinha, Biswas and Bhowmick (IJCNN 2020), each on its own, from a prepared "
    "dataset (`talkface prepare ...`).\n\n"
    "Order: [bold]landmarks[/bold] (speech -> person-independent landmarks) and [bold]blinks[/bold] "
    "(noise -> eye-blink motion) are independent; [bold]texture[/bold] renders frames. Each command writes "
    "OUT/checkpoints/last.pt (+ step_XXXXXXX.pt) and OUT/tensorboard; `--resume` continues a stopped run "
    "exactly. Put every stage's OUT under one folder (runs/lm, runs/blink, runs/tex) and pass that "
    "folder to `talkface generate --checkpoints runs/`.\n\n"
    "Devices: `--devices 4` runs DDP on 4 GPUs; multi-node runs start the same command under torchrun "
    "with `--num-nodes`."
)


def register(app: typer.Typer) -> None:
    """Add ``train`` (landmarks, blinks; texture and ``generate`` come from texture_cli) to ``app``."""
    train_app = typer.Typer(name="train", help=TRAIN_HELP, no_args_is_help=True, rich_markup_mode="rich")
    train_app.command("landmarks")(train_landmarks)
    train_app.command("blinks")(train_blinks)
    app.add_typer(train_app, name="train")
    from talkface.models import texture_cli

    texture_cli.register(train_app, app)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def train_landmarks(
    data: fl.DataOpt,
    split: fl.SplitOpt = "seen",
    out: fl.OutOpt = Path("runs/lm"),
    max_steps: fl.MaxStepsOpt = 3000,
    batch_size: fl.BatchSizeOpt = 16,
    devices: fl.DevicesOpt = "1",
    num_nodes: fl.NodesOpt = 1,
    accelerator: fl.AcceleratorOpt = "auto",
    precision: fl.PrecisionOpt = None,
    seed: fl.SeedOpt = 0,
    resume: fl.ResumeOpt = False,
    ckpt_every: fl.CkptEveryOpt = 500,
    log_every: fl.LogEveryOpt = 25,
    val_every: fl.ValEveryOpt = 250,
    num_workers: fl.WorkersOpt = 0,
    lr: fl.LrOpt = 1e-3,
    window_len: int = typer.Option(32, "--window-len", help="Frames per training window (1.28 s at 25 fps)."),
    rnn: str = typer.Option("gru", "--rnn", help="Recurrent layer over time: gru or lstm."),
    mouth_weight: float = typer.Option(4.0, "--mouth-weight", help="Weight of mouth points 48-67 in the "
                                                                     "point loss (others weigh 1)."),
    temporal_weight: float = typer.Option(1.0, "--temporal-weight", help="Weight of the frame-difference "
                                                                           "loss."),
) -> None:
    """Speech -> landmarks: learn displacements of the 68 points from the training split's mean face.

    Input features are whatever the dataset was prepared with (deepspeech 16x29, logmel 16x40, mfcc
    16x13). Validation reports landmark L2 and mouth LMD in crop pixels, next to the mean-face baseline
    (mouth held still), in OUT/metrics.jsonl and TensorBoard.

    Example: talkface train landmarks --data data/grid-prepared --split seen --out runs/lm
    """
    from talkface.models.speech_to_landmarks import LandmarkConfig, LandmarkStage

    _logging()
    if rnn not in ("gru", "lstm"):
        raise typer.BadParameter("--rnn must be gru or lstm")
    settings = fl.settings_from_cli(**locals())
    config = LandmarkConfig(window_len=window_len, rnn=rnn, mouth_weight=mouth_weight,
                            temporal_weight=temporal_weight)
    result = fl.run_training(LandmarkStage(data, split, config), settings)
    _summary(result)


def train_blinks(
    data: fl.DataOpt,
    split: fl.SplitOpt = "seen",
    out: fl.OutOpt = Path("runs/blink"),
    max_steps: fl.MaxStepsOpt = 1500,
    batch_size: fl.BatchSizeOpt = 64,
    devices: fl.DevicesOpt = "1",
    num_nodes: fl.NodesOpt = 1,
    accelerator: fl.AcceleratorOpt = "auto",
    precision: fl.PrecisionOpt = None,
    seed: fl.SeedOpt = 0,
    resume: fl.ResumeOpt = False,
    ckpt_every: fl.CkptEveryOpt = 500,
    log_every: fl.LogEveryOpt = 25,
    val_every: fl.ValEveryOpt = 250,
    num_workers: fl.WorkersOpt = 0,
    lr: fl.LrOpt = 2e-3,
    seq_len: int = typer.Option(40, "--seq-len", help="Frames per eye-motion sequence compared by MMD."),
) -> None:
    """Eye blinks: a noise -> eye-landmark-motion generator, trained without labels by MMD.

    Real sequences are the 12 eye points (36-47) of the dataset's aligned landmarks minus each clip's
    mean eye shape. Validation reports blink rate (per minute) and mean duration (frames) of generated
    and real sequences by the EAR rule, in OUT/metrics.jsonl and TensorBoard.

    Example: talkface train blinks --data data/grid-prepared --out runs/blink
    """
    from talkface.models.blinks import BlinkConfig, BlinkStage

    _logging()
    settings = fl.settings_from_cli(**locals())
    result = fl.run_training(BlinkStage(data, split, BlinkConfig(seq_len=seq_len)), settings)
    _summary(result)


def _summary(result) -> None:  # a fabric_loop.TrainResult
    from talkface.utils.progress import console

    val = " ".join(f"{k}={v:.4g}" for k, v in result.last_validation.items())
    console.print(f"done at step {result.step}: {result.samples_per_s:.1f} samples/s; {val}")
    console.print(f"checkpoint: {result.out_dir / 'checkpoints' / 'last.pt'}; "
                  f"TensorBoard: tensorboard --logdir {result.out_dir / 'tensorboard'}")
