"""``talkface leaderboard build`` and ``talkface leaderboard plot``.

Imports stay inside the commands so that ``talkface --help`` does not load pandas or matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from talkface.utils.cli_kit import fail

app = typer.Typer(
    help=(
        "Comparison tables and plots from `talkface evaluate` results.\n\n"
        "Methods are rows, metrics are columns (arrow = direction), each cell the mean ± 95% bootstrap "
        "interval over clips; the best ranked method is bold only when its interval does not overlap "
        "the second best's. Methods scored under different protocols (dataset, split protocol, part, "
        "crop size, reference set, metric settings) are refused unless --allow-mixed. Published "
        "numbers are cited, never ranked. See docs/leaderboard.md."
    ),
    no_args_is_help=True,
)

FORMAT_HELP = (
    "md, latex, csv, html, or all (all four into the --out folder). Default: from --out's suffix, else md."
)
ResultsArg = Annotated[list[Path], typer.Argument(
    help="One or more results folders written by `talkface evaluate --out`.", show_default=False)]


def _unset_by_default(*flags: str, help: str) -> Any:
    """An option that is None unless given (``--help`` shows no default)."""
    return typer.Option(None, *flags, help=help, show_default=False)


def _comma_list(text: str) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _resolve_format(fmt: str | None, out: Path | None) -> str:
    from talkface.leaderboard.render import EXTENSIONS, FORMATS

    if fmt is not None:
        if fmt not in (*FORMATS, "all"):
            fail(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}, all")
        return fmt
    if out is not None:
        by_ext = {v: k for k, v in EXTENSIONS.items()}
        if out.suffix.lower() in by_ext:
            return by_ext[out.suffix.lower()]
    return "md"


def _is_folder(out: Path) -> bool:
    return out.is_dir() or str(out).endswith(("/", "\\")) or out.suffix == ""


@app.command("build")
def build(
    results: ResultsArg,
    fmt: str | None = _unset_by_default("--format", "-f", help=FORMAT_HELP),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="File to write (e.g. table.tex), or a folder (gets leaderboard.<ext>). "
        "Omitted: print to stdout.",
    ),
    mean_only: bool = typer.Option(False, "--mean-only", help="Print the mean alone, without ± interval."),
    allow_mixed: bool = typer.Option(
        False,
        "--allow-mixed",
        help="Build the table even when methods were scored under different protocols; the difference "
        "is footnoted. Without it such a table is refused with the difference named.",
    ),
    include_published: str | None = _unset_by_default(
        "--include-published",
        help="Add the cited numbers for one dataset: grid, tcd-timit or lrs2 (a separate, unranked block).",
    ),
    metrics: str | None = _unset_by_default(
        "--metrics",
        help="Comma-separated columns in this order: name or name:variant (e.g. lmd_mouth,psnr,blink_rate). "
        "Default: every metric in the results.",
    ),
    unranked: str = typer.Option(
        "ground-truth",
        "--unranked",
        help="Comma-separated methods shown but never ranked (the codec floor by default; '' ranks all).",
    ),
    test: str = typer.Option(
        "wilcoxon",
        "--test",
        help="Paired test of the best two methods per column: wilcoxon (signed-rank) or bootstrap.",
    ),
) -> None:
    """Build a comparison table from results folders (Markdown to stdout by default).

    Examples: printed Markdown; booktabs LaTeX; one self-contained HTML page;
    all four formats with the cited LRS2 numbers.
      talkface leaderboard build results/
      talkface leaderboard build results/ --format latex --out table.tex
      talkface leaderboard build results/ --out board.html
      talkface leaderboard build results/ --include-published lrs2
        --format all --out board/
    """
    from talkface.leaderboard.load import LeaderboardError, load_results
    from talkface.leaderboard.published import load_published
    from talkface.leaderboard.render import EXTENSIONS, FORMATS, render
    from talkface.leaderboard.table import build_leaderboard
    from talkface.utils import atomic

    fmt = _resolve_format(fmt, out)
    try:
        methods = load_results(results)
        published = load_published(include_published) if include_published else []
        board = build_leaderboard(
            methods,
            metrics=metrics,
            allow_mixed=allow_mixed,
            mean_only=mean_only,
            unranked=_comma_list(unranked),
            test=test,
            published=published,
            published_dataset=include_published,
        )
    except LeaderboardError as exc:
        fail(str(exc))
        return
    formats = list(FORMATS) if fmt == "all" else [fmt]
    if out is None:
        if fmt == "all":
            fail("--format all needs --out FOLDER")
        typer.echo(render(board, fmt), nl=False)
        return
    if fmt == "all" or _is_folder(out):
        targets = [(f, out / f"leaderboard{EXTENSIONS[f]}") for f in formats]
    else:
        targets = [(fmt, out)]
    for f, path in targets:
        atomic.write_text(path, render(board, f))
        typer.echo(f"wrote {path}")


@app.command("plot")
def plot(
    results: ResultsArg,
    metric: str | None = _unset_by_default(
        "--metric",
        "-m",
        help="Metric to plot, name or name:variant (e.g. lmd_mouth). Not needed for --kind blinks.",
    ),
    kind: str = typer.Option(
        "bar",
        "--kind",
        "-k",
        help="bar: mean and 95% interval per method; box or violin: per-clip distribution; blinks: blink "
        "rate and duration against the real data; scatter: per-clip values of two methods (--methods a,b).",
    ),
    methods: str | None = _unset_by_default(
        "--methods",
        help="Comma-separated methods to show, in this order (exactly two for scatter). Default: all.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Image file: .png or .svg (also .pdf)."),
    allow_mixed: bool = typer.Option(
        False, "--allow-mixed", help="Plot methods scored under different protocols (noted in the title)."
    ),
) -> None:
    """Plot one metric across methods, blinks against the real data, or two methods clip by clip.

    Examples: bars with 95% intervals; per-clip boxes as SVG; blink rate and
    duration beside the real data; one point per clip for two methods.
      talkface leaderboard plot results/ --metric lmd_mouth --out lmd.png
      talkface leaderboard plot results/ --metric psnr --kind box --out psnr.svg
      talkface leaderboard plot results/ --kind blinks --out blinks.png
      talkface leaderboard plot results/ --metric lmd_mouth --kind scatter
        --methods ours,static-frame --out scatter.png
    """
    from talkface.leaderboard.load import LeaderboardError, load_results
    from talkface.leaderboard.plots import KINDS, make_plot

    if kind not in KINDS:
        fail(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    chosen = _comma_list(methods) if methods else None
    try:
        loaded = load_results(results)
        path = make_plot(loaded, kind=kind, metric=metric, methods=chosen, out=out, allow_mixed=allow_mixed)
    except LeaderboardError as exc:
        fail(str(exc))
        return
    typer.echo(f"wrote {path}")


def register(root: typer.Typer) -> None:
    """Add the ``leaderboard`` group to the root app."""
    root.add_typer(app, name="leaderboard")
