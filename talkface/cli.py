"""The ``talkface`` command: one sub-app (or command group) per part of the job, nothing else."""

from __future__ import annotations

import typer

from talkface import __version__
from talkface.demo import cli as demo_cli
from talkface.evaluate import cli as evaluate_cli
from talkface.generation import cli as generation_cli
from talkface.leaderboard import cli as leaderboard_cli
from talkface.prepare import cli as preprocess_cli
from talkface.study import cli as study_cli
from talkface.train import cli as models_cli

app = typer.Typer(
    name="talkface",
    help=(
        "Speech-driven talking-face research, end to end.\n\n"
        "A tour: [bold]prepare[/bold] a corpus into landmarks, aligned crops and speech features; "
        "[bold]inspect[/bold] a prepared clip; compute [bold]features[/bold] for one wav; "
        "[bold]train[/bold] the four stages of Sinha et al. (IJCNN 2020); [bold]generate[/bold] "
        "talking-face videos and the built-in [bold]baseline[/bold]s; [bold]evaluate[/bold] them with "
        "named, calibrated metrics ([bold]metrics list[/bold] shows them); build comparison tables with "
        "[bold]leaderboard[/bold]; tile methods side by side with [bold]compare[/bold]; run a blinded "
        "user [bold]study[/bold]. Start with [bold]talkface demo[/bold]: all of it on 12 real GRID clips."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"talkface {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """talkface: speech-driven talking-face research toolkit."""


preprocess_cli.register(app)
models_cli.register(app)
generation_cli.register(app)
evaluate_cli.register(app)
leaderboard_cli.register(app)
study_cli.register(app)
demo_cli.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
