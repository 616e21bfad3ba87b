"""``talkface demo``: the whole job on real clips (see :mod:`talkface.demo.run` and docs/demo.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from talkface.utils.cli_kit import fail

DEMO_HELP = """The whole job on 12 real GRID clips, in about 6-7 minutes on 2 CPU cores.

Prepares the built-in clips (GRID speaker s1, CC BY 4.0), trains the pipeline with a short budget,
generates the 4 held-out clips, makes the 5 built-in baselines, evaluates all six, prints the
leaderboard (HTML, CSV, LaTeX and plots written too), exports an A/B study package and a side-by-side
video (real | ours | static-frame), then names the files to open first. Every step runs a talkface
command, printed as it runs.

Rerun the same command to resume: finished steps are skipped.

Examples:
  talkface demo
  talkface demo --quick --out /tmp/demo      (CI: tiny training, five metrics)
  talkface demo --data data/grid-prepared --protocol seen --out demo-grid
"""


def demo_command(app: typer.Typer) -> Callable[..., None]:
    """The ``demo`` command, running its steps as commands of ``app`` (the root talkface app, handed
    down by :mod:`talkface.cli` so the demo never imports the command line above it)."""

    def demo(
        out: Path = typer.Option(Path("demo-output"), "--out", "-o",
                                 help="Folder receiving everything the demo makes (resumed when rerun)."),
        quick: bool = typer.Option(False, "--quick",
                                   help="CI size: a few training steps, fewer metrics."),
        data: Path | None = typer.Option(
            None, "--data", help="A prepared dataset (`talkface prepare ...`) to run on instead of the "
            "built-in clips: trains on its train part, generates and scores its test part. It is only read."),
        protocol: str | None = typer.Option(
            None, "--protocol", help="With --data: the split protocol (default: the dataset's own)."),
        gpu: bool = typer.Option(False, "--gpu", help="Train and generate on the GPU (--accelerator gpu, "
                                 "--device cuda)."),
    ) -> None:
        from talkface.demo.run import DemoConfig, DemoError, StepFailed, run_demo

        config = DemoConfig(out=out, quick=quick, data=data, protocol=protocol, gpu=gpu)
        try:
            run_demo(config, app)
        except DemoError as exc:
            fail(exc)
        except StepFailed as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code if exc.exit_code not in (0, None) else 1) from None
        except KeyboardInterrupt:
            typer.echo("stopped: run the same command again to continue where it stopped", err=True)
            raise typer.Exit(130) from None

    return demo


def register(app: typer.Typer) -> None:
    app.command("demo", help=DEMO_HELP)(demo_command(app))
