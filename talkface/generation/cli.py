"""``talkface generate``, ``talkface baseline <name>`` (one command per registered baseline) and
``talkface compare``.

Options shared by ``generate --data`` and ``baseline`` are declared once here. Conventions
(docs/architecture.md): ``--data`` a prepared dataset, ``--protocol`` a split protocol (default: the
dataset's own), ``--part`` train | val | test; the old ``--split`` (which meant the part here) still
works with a deprecation note.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from talkface.utils.cli_kit import fail, renamed_option

PARTS = ("train", "val", "test")

CheckpointsOpt = Annotated[Path | None, typer.Option(
    "--checkpoints", help="Folder holding the trained stages as `train` writes them (e.g. runs/ with "
    "runs/lm, runs/blink, runs/tex); each stage's selected file is used (best.pt when the stage selects "
    "one, else last.pt), as its checkpoint.json says. Default: runs/ when it exists, else the model "
    "shipped with talkface (said so when used).", file_okay=False)]
DataOpt = Annotated[Path, typer.Option(
    "--data", help="Prepared dataset folder (`talkface prepare ...`).", exists=True, file_okay=False)]
PartOpt = Annotated[str, typer.Option("--part", help="Which part of the protocol: train | val | test.")]
ProtocolOpt = Annotated[str | None, typer.Option(
    "--protocol", help="Split protocol (seen, speaker-independent, ...); default: the dataset's own.")]
SplitOpt = Annotated[str | None, typer.Option(
    "--split", hidden=True, help="Deprecated: the part (train | val | test); use --part.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds the blink generator (same seed, same blinks); "
                                      "with --data each clip draws its own blinks from the seed and its id.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (GPU when present) | cpu | cuda | cuda:1.")]
BatchOpt = Annotated[int | None, typer.Option(
    "--batch-size", help="Frames per texture-generator batch (default 16 on CPU, 64 on GPU).")]
DeepSpeechOpt = Annotated[Path | None, typer.Option(
    "--deepspeech-model", help="DeepSpeech v0.1.0 output_graph.pb, when the landmark model was trained on "
    "DeepSpeech features.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
IdentityFromOpt = Annotated[str, typer.Option(
    "--identity-from", help="The identity image of each clip: other-clip (a frame of another clip of the "
    "same speaker, so no method is scored on the frame it was given; the clip itself, flagged, when its "
    "speaker has one clip) or same-clip (the clip's own frame). Both use the same frame rule: a closed, "
    "neutral mouth with the eyes open.")]
CompositeOpt = Annotated[str, typer.Option(
    "--composite", help="Where the texture stage's pixels are kept: auto (interior for a texture stage "
    "that edits the warped identity, the recipe's default; face-parts otherwise) | interior (the identity "
    "warped to the target landmarks, the texture stage's pixels only inside the open mouth and the eyes: "
    "keeps a person it never saw) | face-parts (its mouth and eyes pasted into the identity frame).")]


@dataclass
class RunOptions:
    """The options ``generate`` and every ``baseline <name>`` share, with their defaults."""

    checkpoints: Path | None = None
    part: str = "test"
    protocol: str | None = None
    split: str | None = None  # deprecated spelling of part
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None
    deepspeech_model: Path | None = None
    quiet: bool = False
    identity_from: str = "other-clip"
    composite: str = "auto"

    def deepspeech(self) -> str | None:
        return str(self.deepspeech_model) if self.deepspeech_model else None

    def composite_rule(self) -> str | None:
        """``--composite`` for :func:`~talkface.generation.generator.load_generator` (None: the default)."""
        return None if self.composite == "auto" else self.composite


RUN_OPTIONS = (("checkpoints", CheckpointsOpt), ("part", PartOpt), ("protocol", ProtocolOpt),
               ("split", SplitOpt), ("seed", SeedOpt), ("device", DeviceOpt), ("batch_size", BatchOpt),
               ("deepspeech_model", DeepSpeechOpt), ("quiet", QuietOpt), ("identity_from", IdentityFromOpt),
               ("composite", CompositeOpt))


def with_run_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The Typer command of ``fn``: its own parameters followed by :data:`RUN_OPTIONS` (declared once),
    which ``fn`` receives as one :class:`RunOptions` argument ``opts``."""
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "opts"]
    defaults = RunOptions()
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                default=getattr(defaults, name)) for name, annotation in RUN_OPTIONS]

    @functools.wraps(fn)
    def command(**values: Any) -> None:
        opts = RunOptions(**{name: values.pop(name) for name, _ in RUN_OPTIONS})
        fn(**values, opts=opts)

    command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    return command


def register(app: typer.Typer) -> None:
    """Add ``generate``, ``baseline <name>`` and ``compare`` to the root app."""
    app.command("generate")(generate)
    app.add_typer(baseline_app(), name="baseline")
    app.command("compare")(compare)


def _errors() -> tuple[type[BaseException], ...]:
    """What a generation command reports as one line and exit 2 (all user-facing, none a bug)."""
    from talkface.core.media import MediaError
    from talkface.utils.lock import FolderLocked

    # ValueError covers NoFaceError, DatasetError, CheckpointError; FileNotFoundError StageMissing.
    return (ValueError, FileNotFoundError, KeyError, MediaError, FolderLocked)


def resolve_part(part: str, split: str | None) -> str:
    """``--part``, or the deprecated ``--split`` (with a note); ``BadParameter`` for anything else."""
    given = None if part == "test" else part  # "test" is --part's default: not a choice the user made
    part = renamed_option("--part", given, "--split", split,
                          "in generate and baseline it names the part") or part
    if part not in PARTS:
        raise typer.BadParameter(f"--part must be train, val or test, not {part!r}")
    return part


def _checkpoints(opts: RunOptions, needs_stages: bool = True) -> Path:
    """``--checkpoints``, else runs/, else the shipped model (with a note on stderr); a method that
    loads no stage reads nothing, so no shipped model is named for it."""
    from talkface.generation.pretrained import DEFAULT_RUNS, resolve_checkpoints

    if not needs_stages:
        return opts.checkpoints or DEFAULT_RUNS
    folder, note = resolve_checkpoints(opts.checkpoints)
    if note:
        typer.echo(note, err=True)
    return folder


def _report(summary: dict[str, Any], out: Path) -> None:
    typer.echo(f"{out}: {len(summary['generated'])} generated, {len(summary['skipped_existing'])} already "
               f"there, {len(summary['failed'])} failed ({summary['method']}, protocol "
               f"{summary['protocol']!r}, part {summary['part']!r}; see {out / 'generation.json'})")
    typer.echo(f"identity: {summary['identity_from']} ({summary['identity_rule']})")
    if summary.get("identity_same_clip"):
        same = summary["identity_same_clip"]
        typer.echo(f"note: {len(same)} clip(s) took the identity from themselves, their speaker having no "
                   f"other usable clip (flagged identity_same_clip): {', '.join(same[:5])}"
                   + (" ..." if len(same) > 5 else ""), err=True)
    for clip_id, error in summary["failed"].items():
        typer.echo(f"  {clip_id}: {error}", err=True)


# -------------------------------------------------------------------------------------------------
# generate


@with_run_options
def generate(
    out: Path = typer.Option(..., "--out", help="With --audio: the mp4 to write. With --data: a folder "
                             "receiving one <clip_id>.mp4 per clip (ready for `talkface evaluate`)."),
    audio: Path | None = typer.Option(None, "--audio", help="Speech file (wav, mp3, m4a, or a video's audio "
                                      "track; any sample rate).", exists=True, dir_okay=False),
    identity: Path | None = typer.Option(None, "--identity", help="Image with exactly one face (png, jpg), "
                                         "at least 128x128 pixels: whose face talks.", exists=True,
                                         dir_okay=False),
    data: Path | None = typer.Option(None, "--data", help="Prepared dataset: generate every usable clip of "
                                     "--part, each clip's first frame as identity and its audio as speech.",
                                     exists=True, file_okay=False),
    opts: RunOptions = RunOptions(),
) -> None:
    """Generate talking-face videos from speech with the trained stages.

    One video: talkface generate --audio speech.wav --identity face.png --checkpoints runs/ --out talking.mp4

    A dataset's test clips:
    talkface generate --data data/grid-prepared --part test --checkpoints runs/ --out out/ours

    Pipeline: audio (read at 16 kHz) -> speech features (the landmark model's dataset backend) ->
    person-independent landmarks -> generated blinks -> retargeted to the identity -> landmark sketches
    -> texture generator -> frames at 25 fps -> H.264 mp4 (crf 18) with the input audio as AAC. One video
    has ceil(duration x 25) frames; with --data each video has its reference crop's frame count and the
    clip's audio, so `talkface evaluate` pairs them frame by frame. The --data form skips videos that
    exist (rerun to resume), records failures in OUT/generation.json and goes on.
    """
    from talkface.generation import generator
    from talkface.generation.method import TrainedPipeline
    from talkface.generation.part import generate_part

    single = audio is not None or identity is not None
    if single == (data is not None):
        raise typer.BadParameter("give either --audio and --identity (one video) or --data (a dataset's "
                                 "part)")
    if single and (audio is None or identity is None):
        raise typer.BadParameter("the one-video form needs both --audio and --identity")
    part = resolve_part(opts.part, opts.split)
    try:
        inputs = generator.read_inputs(audio, identity) if single else None  # before loading any model
        gen = generator.load_generator(_checkpoints(opts), opts.device, opts.deepspeech(), opts.batch_size,
                                      data=data, composite_rule=opts.composite_rule())
        if single:
            record = generator.generate_from_files(gen, audio, identity, out, opts.seed, inputs)
        else:
            summary = generate_part(gen, TrainedPipeline(), data, part, out, opts.seed,
                                    opts.protocol, opts.quiet, opts.identity_from)
    except _errors() as exc:
        fail(exc)
    if single:
        typer.echo(f"wrote {out}: {record['n_frames']} frames, {record['duration_s']:.2f} s")
        typer.echo(json.dumps({k: record[k] for k in ("seed", "fps", "frame_count_rule", "composite")}))
    else:
        _report(summary, out)


# -------------------------------------------------------------------------------------------------
# baseline <name>


def baseline_app() -> typer.Typer:
    """The ``baseline`` group: one command per member of the baselines registry."""
    from talkface.generation.baselines import BASELINES

    group = typer.Typer(name="baseline", no_args_is_help=True, rich_markup_mode="rich", help=(
        "Built-in reference methods, written exactly as `generate --data` writes the trained pipeline's "
        "videos (same names, frame counts, audio, codec), ready for `talkface evaluate`. "
        "See docs/baselines.md."))
    for name, method in BASELINES.items():
        group.command(name, help=_baseline_help(name, method))(_baseline_command(name))
    return group


def _baseline_help(name: str, method: Any) -> str:
    needs = (f"Needs the trained {' and '.join(method.stages)} stage(s) under --checkpoints."
             if method.stages else "Needs no trained stage.")
    return (f"{method.definition[:1].upper()}{method.definition[1:]}.\n\n{needs}\n\n"
            f"Example: talkface baseline {name} --data data/grid-prepared --part test --out out/{name}")


def _baseline_command(name: str) -> Callable[..., None]:
    def command(
        data: DataOpt,
        out: Path = typer.Option(..., "--out", help=f"Folder receiving one <clip_id>.mp4 per clip "
                                 f"(e.g. out/{name})."),
        opts: RunOptions = RunOptions(),
    ) -> None:
        from talkface.generation import generator
        from talkface.generation.baselines import get_baseline
        from talkface.generation.part import generate_part

        part = resolve_part(opts.part, opts.split)
        method = get_baseline(name)
        try:
            gen = generator.load_generator(_checkpoints(opts, bool(method.stages)), opts.device,
                                           opts.deepspeech(), opts.batch_size, stages=method.stages,
                                           needed_by=f"baseline {name}", data=data,
                                           composite_rule=opts.composite_rule())
            summary = generate_part(gen, method, data, part, out, opts.seed, opts.protocol,
                                    opts.quiet, opts.identity_from)
        except _errors() as exc:
            fail(exc)
        _report(summary, out)

    command.__name__ = f"baseline_{name.replace('-', '_')}"
    return with_run_options(command)


# -------------------------------------------------------------------------------------------------
# compare


def compare(
    inputs: list[str] = typer.Argument(..., metavar="NAME=PATH...", help="Methods to tile, left to right: "
                                       "a video file, or a folder of <clip_id>.mp4 (with --clip); a "
                                       "prepared dataset folder stands for its reference crops."),
    out: Path = typer.Option(..., "--out", help="The mp4 to write."),
    clip: str | None = typer.Option(None, "--clip", help="Clip id to take from folder inputs."),
) -> None:
    """A side-by-side video: methods tiled with their names above them, the first input's audio.

    Example: talkface compare real=data/grid-prepared ours=out/ours static=out/static-frame
    --clip s1_bbaf2n --out cmp.mp4

    Frame count: the shortest input's; inputs more than one frame apart are refused.
    """
    from talkface.generation.compare import compare_videos, parse_inputs, resolve_inputs

    try:
        made = compare_videos(resolve_inputs(parse_inputs(inputs), clip), out)
    except _errors() as exc:
        fail(exc)
    w, h = made["size"]
    typer.echo(f"wrote {out}: {' | '.join(made['methods'])}, {made['n_frames']} frames of {w}x{h}, audio "
               f"from {made['audio_from'] or 'no input'}")
