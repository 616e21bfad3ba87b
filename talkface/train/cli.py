"""``talkface train <stage>``: one command per registered stage, generated from
:data:`talkface.train.settings.STAGES`.

Every command has the shared options (declared once, ``SHARED_OPTIONS``) with its stage's defaults,
followed by the stage's own options; a registered stage cannot lack its command.
"""

from __future__ import annotations

import inspect
import logging
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
    "`--resume` continues a stopped run exactly. Put every stage's OUT under one folder (runs/lm, "
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


def stage_command(spec: to.StageSpec) -> Callable[..., None]:
    """The Typer command of one stage: shared options (the stage's defaults), then its own options."""
    options = [(name, annotation, spec.default(name)) for name, annotation, _ in to.SHARED_OPTIONS]
    options += [(o.name, Annotated[o.type, o.option], o.default) for o in spec.options]
    return typer_command(f"train_{spec.name}", spec.doc, options,
                         lambda values: run_stage_command(spec, values))


def run_stage_command(spec: to.StageSpec, values: dict[str, Any]) -> None:
    """Build the stage and train it; a dataset, checkpoint or folder problem is one line and exit 2."""

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    protocol = renamed_option("--protocol", values.pop("protocol"), "--split", values.pop("split"),
                              "in train it names the split protocol")
    own = {o.name: values[o.name] for o in spec.options}
    try:
        settings = to.settings_from_cli(**values)
        stage = spec.build(values["data"], protocol, **own)
        from talkface.train.loop import run_training

        result = run_training(stage, settings)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:  # DatasetError, CheckpointError too
        fail(exc)
    print_summary(result)


PIPELINE_HELP = """The one-command recipe: landmarks, blinks and texture in sequence into OUT/lm, OUT/blink
    and OUT/tex, with one progress view and a validation table against each stage's baseline at the end.

    Default steps: lm=1500, blink=400, tex=1000 (about 35 CPU-minutes on 2 cores); `--budget 45m`
    shares a wall-time budget instead (landmarks 25%, blinks 10%, texture 65%), `--steps` sets any
    stage's steps. Rerun the same command to resume: finished stages are skipped, a stopped one
    continues exactly. Each stage keeps its `train <stage>` defaults otherwise (docs/models.md).

    Example: talkface train pipeline --data data/grid-prepared --out runs/ --budget 45m, then
    talkface generate --checkpoints runs/ ...
    """
PIPELINE_SHARED = ("data", "protocol", "seed", "devices", "num_nodes", "accelerator", "precision")


def pipeline_command() -> Callable[..., None]:
    """``train pipeline``: the shared options it needs (declared once, in SHARED_OPTIONS) and its own."""

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
            "crops; about 5 s a clip on 2 cores); 0 skips it.")], 24),
    ]
    return typer_command("train_pipeline", PIPELINE_HELP, options, run_pipeline_command)


def run_pipeline_command(values: dict[str, Any]) -> None:
    from talkface.train import all_stages

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        budget = all_stages.parse_budget(values["budget"]) if values["budget"] else None
        steps = all_stages.parse_steps(values["steps"]) if values["steps"] else {}
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    common = {k: values[k] for k in ("seed", "devices", "num_nodes", "accelerator", "precision")}
    try:
        rows = all_stages.run_pipeline(values["data"], values["out"], values["protocol"], steps, budget,
                                       common, calibration_clips=values["calibration_clips"])
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        fail(exc)
    all_stages.print_summary(rows)


def print_summary(result: Any) -> None:  # a fabric_loop.TrainResult
    from talkface.utils.progress import console

    val = " ".join(f"{k}={v:.4g}" for k, v in result.last_validation.items())
    console.print(f"done at step {result.step}: {result.samples_per_s:.1f} samples/s; {val}")
    console.print(f"checkpoints: {result.out_dir / 'checkpoints'} (checkpoint.json says which file is "
                  f"best); TensorBoard: tensorboard --logdir {result.out_dir / 'tensorboard'}")
