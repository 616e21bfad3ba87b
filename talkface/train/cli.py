"""``talkface train <stage>``: one command per registered stage, generated from
:data:`talkface.train.settings.STAGES`.

Every command has the shared options (declared once, ``SHARED_OPTIONS``) with its stage's defaults,
followed by the stage's own options; a registered stage cannot lack its command.
"""

from __future__ import annotations

import inspect
import logging
import shlex
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from talkface.train import settings as to
from talkface.utils.cli_kit import fail, generated_command, keyword, renamed_option

TRAIN_HELP = (
    "Train the stages of Sinha, Biswas and Bhowmick (IJCNN 2020), each on its own, from a prepared "
    "dataset (`talkface prepare ...`).\n\n"
    "Order: [bold]landmarks[/bold] (speech -> person-independent landmarks) and [bold]blinks[/bold] "
    "(noise -> eye-blink motion) are independent; [bold]texture[/bold] renders frames. Each command writes "
    "OUT/checkpoints/last.pt (+ best.pt, step_XXXXXXX.pt and checkpoint.json) and OUT/tensorboard; "
    "`--resume` continues a stopped run exactly. Ctrl-C (or SIGTERM) finishes the step, saves it to "
    "last.pt and prints the command that continues (exit 130); a second Ctrl-C stops at once, keeping "
    "the last saved files. Put every stage's OUT under one folder (runs/lm, "
    "runs/blink, runs/tex) and pass that folder to `talkface generate --checkpoints runs/`.\n\n"
    "Every stage trains on the dataset's own split protocol unless `--protocol` names another one the "
    "dataset holds.\n\n"
    "Devices: `--devices 4` runs DDP on 4 GPUs; multi-node runs start the same command under torchrun "
    "with `--num-nodes`."
)


def register(app: typer.Typer) -> None:
    """Add ``train`` with one command per registered stage to ``app``."""
    train_app = typer.Typer(name="train", help=TRAIN_HELP, no_args_is_help=True, rich_markup_mode="rich")
    for name in to.STAGES.names():
        spec = to.STAGES.get(name)
        train_app.command(name, help=paragraphs(spec.doc))(stage_command(spec))
    train_app.command("pipeline", help=paragraphs(PIPELINE_HELP))(pipeline_command())
    app.add_typer(train_app, name="train")


def paragraphs(doc: str) -> str:
    """A docstring as help text: paragraphs kept, the lines inside each joined (rich rewraps them)."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


def typer_command(name: str, doc: str, options: list[tuple[str, Any, Any]],
                  body: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    """A command with ``options`` ((parameter, annotated type, default)) calling ``body``."""
    return generated_command(name, doc, [keyword(n, a, d) for n, a, d in options], body)


def stage_options(spec: to.StageSpec) -> list[tuple[str, Any, Any]]:
    """A stage command's options: the shared ones (with the stage's defaults), then its own."""
    options = [(name, annotation, spec.default(name)) for name, annotation, _ in to.SHARED_OPTIONS]
    options += [(o.name, Annotated[o.type, o.option], o.default) for o in spec.options]
    return options


def stage_command(spec: to.StageSpec) -> Callable[..., None]:
    """The Typer command of one stage: shared options (the stage's defaults), then its own options."""
    return typer_command(f"train_{spec.name}", spec.doc, stage_options(spec),
                         lambda values: run_stage_command(spec, values))


def command_line(words: list[str], options: list[tuple[str, Any, Any]], values: dict[str, Any]) -> str:
    """``talkface WORDS --option value ...``, shell-quoted: the command these parsed ``values`` came from,
    with every option whose value differs from its default (required ones always), ``--resume`` last."""
    out = ["talkface", *words]
    for name, annotation, default in sorted(options, key=lambda option: option[0] == "resume"):
        value = values.get(name)
        if value is None or (default is not ... and value == default):
            continue
        on, _, off = str(typing.get_args(annotation)[1].default).partition("/")  # "--resume/--no-resume"
        if isinstance(value, bool):
            out += [on] if value else [off] if off else []
        else:
            out += [on, str(value)]
    return shlex.join(out)


def stopped(stop: Any, resume: str, restart: str | None = None) -> None:
    """A run stopped by SIGINT/SIGTERM (``loop.TrainingInterrupted``): one sentence, then exit 130 (143)."""
    typer.echo(stop.sentence(resume, restart), err=True)
    raise typer.Exit(stop.exit_code)


def interrupted_outside_training(what: str, command: str) -> None:
    """Ctrl-C outside the training loop (setup, the blink calibration): one sentence and exit 130."""
    typer.echo(f"interrupted {what}: rerun {command}", err=True)
    raise typer.Exit(130)


def run_stage_command(spec: to.StageSpec, values: dict[str, Any]) -> None:
    """Build the stage and train it; a dataset, checkpoint or folder problem is one line and exit 2;
    Ctrl-C saves an exact-resume checkpoint and prints the command that continues (exit 130)."""

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    protocol = renamed_option("--protocol", values.pop("protocol"), "--split", values.pop("split"),
                              "in train it names the split protocol")
    own = {o.name: values[o.name] for o in spec.options}
    given = {**values, "protocol": protocol}

    def again(resume: bool) -> str:
        return command_line(["train", spec.name], stage_options(spec), {**given, "resume": resume})

    from talkface.train.loop import TrainingInterrupted

    try:
        settings = to.settings_from_cli(**values)
        stage = spec.build(values["data"], protocol, **own)
        from talkface.train.loop import run_training

        result = run_training(stage, settings)
    except TrainingInterrupted as stop:
        stopped(stop, again(resume=True), again(resume=values["resume"]))
    except KeyboardInterrupt:  # before the loop started: nothing trained, nothing to save
        interrupted_outside_training("before training started (nothing was trained)", again(values["resume"]))
    except (ValueError, FileNotFoundError, FileExistsError) as exc:  # DatasetError, CheckpointError too
        fail(exc)
    print_summary(result)


PIPELINE_HELP = """The one-command recipe: landmarks, blinks and texture in sequence into OUT/lm, OUT/blink
    and OUT/tex, with one progress view and a validation table against each stage's baseline at the end.

    Default steps: lm=1500, blink=400, tex=1000 (about 35 CPU-minutes on 2 cores); `--budget 45m`
    shares a wall-time budget instead (landmarks 25%, blinks 10%, texture 65%), `--steps` sets any
    stage's steps; the budget includes the blink calibration, which renders only the clips the time left
    allows. Rerun the same command to resume: finished stages are skipped, a stopped one (Ctrl-C saves
    the running stage and exits 130) continues exactly. Each stage keeps its `train <stage>` defaults
    otherwise (docs/models.md).

    Example: talkface train pipeline --data data/grid-prepared --out runs/ --budget 45m, then
    talkface generate --checkpoints runs/ ...
    """
PIPELINE_SHARED = ("data", "protocol", "seed", "devices", "num_nodes", "accelerator", "precision")


def pipeline_command() -> Callable[..., None]:
    """``train pipeline``: the shared options it needs (declared once, in SHARED_OPTIONS) and its own."""
    return typer_command("train_pipeline", PIPELINE_HELP, pipeline_options(), run_pipeline_command)


#: options of the landmark stage that ``train pipeline`` also takes and passes to it
PIPELINE_LANDMARK_OPTIONS = ("feature_norm", "voice_augment")


def pipeline_options() -> list[tuple[str, Any, Any]]:
    options = [option for option in to.SHARED_OPTIONS if option[0] in PIPELINE_SHARED]
    options += [
        ("out", Annotated[Path, typer.Option("--out", help="Folder receiving one run folder per stage "
                                             "(OUT/lm, OUT/blink, OUT/tex); pass it to `generate "
                                             "--checkpoints`.")], Path("runs")),
        ("budget", Annotated[str | None, typer.Option("--budget", help="Wall-time budget for all stages, "
                                                      "e.g. 45m, 1h30m (shared 25/10/65%).")], None),
        ("steps", Annotated[str | None, typer.Option("--steps", help="Steps per stage, e.g. "
                                                     "lm=1500,blink=400,tex=1000 (any subset).")], None),
        ("calibration_clips", Annotated[int, typer.Option(
            "--calibration-clips", min=0, help="Training clips on which the blink amplitude is calibrated "
            "through the trained texture stage after training (blink rate in generated frames vs the real "
            "crops; about 5 s a clip on 2 cores, timed while it runs: with --budget, as many clips as "
            "the time left allows); 0 skips it.")], 24),
    ]
    # the landmark stage's own voice options, declared once (settings.STAGES) and passed through
    for option in to.STAGES.get("landmarks").options:
        if option.name in PIPELINE_LANDMARK_OPTIONS:
            options.append((option.name, Annotated[option.type, option.option], option.default))
    return options


def run_pipeline_command(values: dict[str, Any]) -> None:
    import time

    from talkface.train import all_stages
    from talkface.train.loop import TrainingInterrupted

    started = time.monotonic()  # --budget counts from here
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    same = command_line(["train", "pipeline"], pipeline_options(), values)
    try:
        budget = all_stages.parse_budget(values["budget"]) if values["budget"] else None
        steps = all_stages.parse_steps(values["steps"]) if values["steps"] else {}
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    common = {k: values[k] for k in ("seed", "devices", "num_nodes", "accelerator", "precision")}
    try:
        rows = all_stages.run_pipeline(values["data"], values["out"], values["protocol"], steps, budget,
                                       common, calibration_clips=values["calibration_clips"], started=started,
                                       stage_options={"landmarks": {k: values[k]
                                                                    for k in PIPELINE_LANDMARK_OPTIONS}})
    except TrainingInterrupted as stop:
        stopped(stop, f"the same command, {same}")
    except KeyboardInterrupt:  # outside a stage's loop: between stages, in setup or in the blink calibration
        interrupted_outside_training("outside a stage's training loop (finished stages are saved; the "
                                     "blink calibration, if it was running, starts over)",
                                     f"the same command: {same}")
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        fail(exc)
    all_stages.print_summary(rows)


def print_summary(result: Any) -> None:  # a fabric_loop.TrainResult
    from talkface.utils.progress import console

    val = " ".join(f"{k}={v:.4g}" for k, v in result.last_validation.items())
    console.print(f"done at step {result.step}: {result.samples_per_s:.1f} samples/s; {val}", markup=False)
    if result.val_is_train:
        console.print("note: validation ran on the training clip(s): the dataset has no clip to hold out, so "
                      "these numbers measure fitting, not generalisation", markup=False)
    logdir = shlex.quote(str(result.out_dir / "tensorboard"))
    console.print(f"checkpoints: {result.out_dir / 'checkpoints'} (checkpoint.json says which file is "
                  f"best); TensorBoard: tensorboard --logdir {logdir}", markup=False, soft_wrap=True)
