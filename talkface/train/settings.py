"""Training settings, the shared ``train`` options (declared once) and the registry of stages,
without importing torch.

Kept apart from :mod:`talkface.train.loop` so that ``talkface --help`` and every other command
start without loading torch and Lightning. ``talkface train <stage>`` commands are generated from
:data:`STAGES` (talkface.train.cli): every command has the :data:`SHARED_OPTIONS` with the stage's own
defaults, plus the stage's :class:`StageOption` s; a stage's module is imported only when it trains.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from talkface.registry import Registry
from talkface.store.checkpoints import CHECKPOINTS_DIR
from talkface.utils.paths import PathUnder

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
    val_every: int = 250
    image_every: int = 500
    num_workers: int = 0
    lr: float = 1e-3
    max_seconds: float | None = None  # stop (with a checkpoint) once this much training time is spent

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.max_steps < 1:
            raise ValueError("--max-steps must be >= 1")
        if self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")

    checkpoint_dir = PathUnder("out_dir", CHECKPOINTS_DIR)
    log_dir = PathUnder("out_dir", "tensorboard")


def parse_devices(devices: str) -> int | str | list[int]:
    """``"4"`` -> 4, ``"0,1"`` -> [0, 1], ``"auto"``/``"-1"`` unchanged (Fabric's own spellings)."""
    devices = str(devices).strip()
    if "," in devices:
        return [int(d) for d in devices.split(",") if d.strip()]
    if devices in ("auto", "-1"):
        return devices if devices == "auto" else -1
    return int(devices)


#: The defaults of :class:`TrainSettings`: the shared options below take theirs from here, so the
#: command line and the library cannot disagree.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainSettings)}

# -------------------------------------------------------------------------------------------------
# The shared options of every ``train`` command, declared once: (parameter name, annotated type,
# default). A stage overrides defaults in its StageSpec.

SHARED_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("data", Annotated[Path, typer.Option(
        "--data", exists=True, file_okay=False,
        help="Prepared dataset folder (output of `talkface prepare ...`).")], ...),
    ("protocol", Annotated[str | None, typer.Option(
        "--protocol",
        help="Split protocol to train on (seen | speaker-independent | ...); default: the dataset's own. "
        "Training uses its 'train' clips, validation its 'val' clips (with none, a seeded 10% of "
        "'train', logged).")], None),
    ("split", Annotated[str | None, typer.Option(
        "--split", hidden=True, help="Deprecated spelling of --protocol.")], None),
    ("out", Annotated[Path, typer.Option(
        "--out", help="Run folder: OUT/checkpoints (last.pt, best.pt, step_XXXXXXX.pt, checkpoint.json), "
        "OUT/tensorboard, validation numbers in OUT/metrics.jsonl.")], ...),
    ("max_steps", Annotated[int, typer.Option(
        "--max-steps", min=1, help="Optimiser steps in total (a resumed run continues up to this count).")],
     DEFAULTS["max_steps"]),
    ("batch_size", Annotated[int, typer.Option("--batch-size", min=1, help="Samples per device per step.")],
     DEFAULTS["batch_size"]),
    ("devices", Annotated[str, typer.Option(
        "--devices", help="Devices per node: a count ('4'), ids ('0,1') or 'auto'. >1 runs DDP.")],
     DEFAULTS["devices"]),
    ("num_nodes", Annotated[int, typer.Option(
        "--num-nodes", min=1, help="Machines in a multi-node DDP run (launch with torchrun or the Fabric "
        "launcher).")], DEFAULTS["num_nodes"]),
    ("accelerator", Annotated[str, typer.Option("--accelerator", help="auto | cpu | gpu.")],
     DEFAULTS["accelerator"]),
    ("precision", Annotated[str | None, typer.Option(
        "--precision", help="Fabric precision; default 32-true on CPU, bf16-mixed on GPU.")],
     DEFAULTS["precision"]),
    ("seed", Annotated[int, typer.Option(
        "--seed", help="Seeds weights, data order and noise: same seed, same run.")], DEFAULTS["seed"]),
    ("resume", Annotated[bool, typer.Option(
        "--resume/--no-resume", help="Continue from OUT/checkpoints/last.pt exactly (weights, optimiser, "
        "RNG states, data position).")], DEFAULTS["resume"]),
    ("ckpt_every", Annotated[int, typer.Option(
        "--ckpt-every", min=1, help="Write a checkpoint every N steps (and at the end).")],
     DEFAULTS["ckpt_every"]),
    ("log_every", Annotated[int, typer.Option(
        "--log-every", min=1, help="TensorBoard scalars every N steps.")], DEFAULTS["log_every"]),
    ("val_every", Annotated[int, typer.Option(
        "--val-every", min=1, help="Validate every N steps (and at the end).")], DEFAULTS["val_every"]),
    ("num_workers", Annotated[int, typer.Option(
        "--num-workers", min=0, help="DataLoader worker processes per device.")], DEFAULTS["num_workers"]),
    ("lr", Annotated[float, typer.Option("--lr", help="Learning rate (Adam).")], DEFAULTS["lr"]),
)


def settings_from_cli(**kwargs: Any) -> TrainSettings:
    """Build :class:`TrainSettings` from CLI keyword arguments, ignoring the ones it does not hold."""
    names = set(TrainSettings.__dataclass_fields__)
    values = {k: v for k, v in kwargs.items() if k in names}
    if "out" in kwargs:
        values["out_dir"] = kwargs["out"]
    return TrainSettings(**values)


# -------------------------------------------------------------------------------------------------
# config dataclasses


# -------------------------------------------------------------------------------------------------
# the registry of training stages


@dataclass(frozen=True)
class StageOption:
    """A stage's own option: ``name`` (the Python parameter), its type, default and Typer option."""

    name: str
    type: Any
    default: Any
    option: Any  # typer.Option("--flag", help=...)


@dataclass(frozen=True)
class StageSpec:
    """What ``talkface train <name>`` needs: the builder of the stage (``module:function``, called as
    ``build(data, protocol, **options)`` and returning a fabric_loop ``Stage``), its help, its defaults
    for the shared options, and its own options."""

    name: str
    builder: str
    doc: str
    defaults: dict[str, Any] = field(default_factory=dict)
    options: tuple[StageOption, ...] = ()

    def build(self, data: Any, protocol: str | None, **options: Any) -> Any:
        module, _, func = self.builder.partition(":")
        return getattr(importlib.import_module(module), func)(data, protocol, **options)

    def default(self, name: str) -> Any:
        """This stage's default for a shared or own option."""
        if name in self.defaults:
            return self.defaults[name]
        for o in self.options:
            if o.name == name:
                return o.default
        return next(d for n, _, d in SHARED_OPTIONS if n == name)


STAGES: Registry[StageSpec] = Registry("training stage")

STAGES.add("landmarks", StageSpec(
    name="landmarks",
    builder="talkface.train.landmarks:build_stage",
    doc="""Speech -> landmarks: learn displacements of the 68 points from the training part's mean face.

    Input features are whatever the dataset was prepared with (deepspeech 16x29, logmel 16x40, mfcc
    16x13). Validation reports, in crop pixels, the mean per-point error of all points and of the mouth
    (no alignment) and the metric lmd_mouth:centroid-mean, each next to the mean face (mouth held still),
    in OUT/metrics.jsonl and TensorBoard, and fits there the motion gain generation scales the mouth's
    motion by (motion_gain: a model moves more on clips it never saw than the real mouth does in step).

    Example: talkface train landmarks --data data/grid-prepared --out runs/lm
    """,
    defaults={"out": Path("runs/lm"), "max_steps": 3000, "batch_size": 16, "lr": 1e-3},
    options=(
        StageOption("window_len", int, 32, typer.Option(
            "--window-len", min=1, help="Frames per training window (1.28 s at 25 fps).")),
        StageOption("rnn", Literal["gru", "lstm"], "gru", typer.Option(
            "--rnn", help="Recurrent layer over time.")),
        StageOption("mouth_weight", float, 4.0, typer.Option(
            "--mouth-weight", help="Weight of mouth points 48-67 in the point loss (others weigh 1).")),
        StageOption("temporal_weight", float, 1.0, typer.Option(
            "--temporal-weight", help="Weight of the frame-difference loss.")),
        StageOption("feature_norm", Literal["dataset", "utterance"], "utterance", typer.Option(
            "--feature-norm", help="The landmark stage's speech features. utterance (default): "
            "standardised first by each clip's own statistics, which removes what a voice holds constant "
            "(measured: mouth motion transfers better to voices never heard; docs/models.md); dataset: "
            "by the training part's statistics only.")),
        StageOption("voice_augment", bool, True, typer.Option(
            "--voice-augment/--no-voice-augment", help="In training, show each window as another voice might "
            "give it: the feature axis stretched 0.8-1.25x (vocal tract length) and two frequency bands "
            "masked (measured: the mouth follows a voice never heard more closely; docs/models.md).")),
    ),
))

STAGES.add("blinks", StageSpec(
    name="blinks",
    builder="talkface.train.blinks:build_stage",
    doc="""Eye blinks: a noise -> eye-landmark-motion generator, trained without labels by MMD.

    Real sequences are the 12 eye points (36-47) of the dataset's aligned landmarks minus each clip's
    mean eye shape. Validation reports blink rate (per minute) and mean duration (frames) of generated
    and real sequences by the EAR rule, in OUT/metrics.jsonl and TensorBoard; best.pt is the validation
    whose rate and duration are closest to the real ones (generation loads it).

    Example: talkface train blinks --data data/grid-prepared --out runs/blink
    """,
    defaults={"out": Path("runs/blink"), "max_steps": 1500, "batch_size": 64, "lr": 2e-3},
    options=(
        StageOption("seq_len", int, 40, typer.Option(
            "--seq-len", min=8, help="Frames per eye-motion sequence compared by MMD.")),
    ),
))

STAGES.add("texture", StageSpec(
    name="texture",
    builder="talkface.train.texture:build_stage",
    doc="""Texture: identity crop + landmark sketch -> frame, with an attention map and a colour map.

    By default (--base warp) the generator edits the identity frame warped to the target landmarks: its
    output is A*C + (1-A)*warped (A: attention in [0,1], C: colour in [-1,1], predicted as a residual to
    the warped frame so the untrained generator is the warp baseline exactly), so it adds only what
    warping cannot do and works on faces it never saw; --base identity is the paper's A*C + (1-A)*identity,
    trained with an LSGAN PatchGAN discriminator on (frame, landmark sketch), L1 to the real frame (plus
    L1 inside the mouth and eye boxes) and attention regularisers; an EMA of the generator's weights is
    what validation and generation use. Pairs come from the prepared crops (crops/<id>.mp4, decoded in
    DataLoader workers): the target frame's landmarks are drawn as a sketch, the identity frame is
    another frame of the same clip (>= 5 frames away). Validation writes L1 and SSIM (scikit-image, 7x7
    window) on the validation clips, and the same for copying the identity frame, to OUT/metrics.jsonl;
    TensorBoard shows real | generated | attention | colour grids. bf16 autocast and channels_last on
    GPU; `--devices 8` trains with DDP.

    Example: talkface train texture --data data/grid-prepared --out runs/tex --devices 8
    """,
    defaults={"out": Path("runs/tex"), "max_steps": 20000, "batch_size": 16, "lr": 2e-4,
              "ckpt_every": 1000, "val_every": 1000, "num_workers": 2},
    options=(
        StageOption("l1_weight", float, 10.0, typer.Option(
            "--l1-weight", help="Weight of the L1 reconstruction loss (the LSGAN term weighs 1).")),
        StageOption("attention_weight", float, 0.1, typer.Option(
            "--attention-weight", help="Weight of mean(A): keeps the attention map from copying nothing "
            "of the identity.")),
        StageOption("cache_mb", int, 256, typer.Option(
            "--cache-mb", min=1, help="Decoded crop clips each DataLoader worker keeps in memory (LRU), "
            "in MB.")),
        StageOption("base", str, "warp", typer.Option(
            "--base", help="What the generator edits: warp (the identity frame warped to the target "
            "landmarks, so it only adds what warping cannot do: the mouth interior, shading; it animates "
            "faces it never saw) or identity (the paper's: the identity frame itself).")),
        StageOption("colour_jitter", float, 0.1, typer.Option(
            "--colour-jitter", min=0.0, help="Colour augmentation: per-channel gain 1 +- J and offset "
            "+- J/2, the same on the identity, warped and target images (0: none).")),
    ),
))
