"""``talkface evaluate`` and ``talkface metrics list``."""

from __future__ import annotations

from pathlib import Path

import typer

metrics_app = typer.Typer(
    help="The metrics talkface computes: names, variants, direction, inputs.", no_args_is_help=True
)


def evaluate(
    generated: Path = typer.Option(
        ...,
        "--generated",
        help="Folder of generated videos <clip_id>.mp4 (or <clip_id>/ folders of PNG frames).",
    ),
    reference: Path = typer.Option(
        ...,
        "--reference",
        help="Prepared dataset (output of `talkface prepare`): its crops are the ground truth.",
    ),
    method: str = typer.Option(..., "--method", help="Name of the method; rerunning replaces its rows only."),
    out: Path = typer.Option(
        Path("results"), "--out", help="Results folder: results.parquet and summary.json."
    ),
    metrics: str = typer.Option(
        "",
        "--metrics",
        help="Comma-separated metric names, optionally name:variant (e.g. psnr,ssim:uniform7-gray-range255,"
        "lmd_mouth). Default: every metric whose inputs and weights are available "
        "(see `talkface metrics list`).",
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes scoring clips in parallel."),
    arcface_model: Path | None = typer.Option(
        None, "--arcface-model", help="insightface-layout ArcFace ONNX file (enables identity_arcface)."
    ),
    lpips_weights: Path | None = typer.Option(
        None, "--lpips-weights", help="LPIPS v0.1 linear-head weights (enables lpips)."
    ),
    lpips_backbone: Path | None = typer.Option(
        None, "--lpips-backbone", help="AlexNet/VGG16 backbone state_dict for LPIPS."
    ),
    syncnet_model: Path | None = typer.Option(
        None, "--syncnet-model", help="SyncNet weights (enables lse_c and lse_d)."
    ),
    detector: str = typer.Option(
        "hog",
        "--detector",
        help="dlib face detector for landmarks on both sides: hog (fast) or cnn (robust).",
    ),
) -> None:
    """Score generated videos against a prepared dataset with named, calibrated metrics.

    Pairs clips by id (unmatched clips are listed), trims frame-count mismatches to the shorter and
    resizes generated frames to the reference crop size (both flagged), finds landmarks on both sides
    with the same detector, and writes one row per (method, clip, metric, variant) to
    OUT/results.parquet plus OUT/summary.json (mean, std, 95% bootstrap CI, full metric definition).

    Example:
      talkface evaluate --generated out/ours --reference data/grid-prepared --method ours --out results/
    """
    from talkface.evaluate.metrics.base import MetricUnavailable
    from talkface.evaluate.runner import EvaluateConfig, run_evaluate

    options = {
        "arcface_model": str(arcface_model) if arcface_model else None,
        "lpips_weights": str(lpips_weights) if lpips_weights else None,
        "lpips_backbone": str(lpips_backbone) if lpips_backbone else None,
        "syncnet_model": str(syncnet_model) if syncnet_model else None,
    }
    cfg = EvaluateConfig(
        generated=generated,
        reference=reference,
        method=method,
        out=out,
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] or None,
        metric_options=options,
        workers=workers,
        landmark_options={"detector": detector},
    )
    try:
        record = run_evaluate(cfg, echo=typer.echo)
    except (FileNotFoundError, KeyError, ValueError, MetricUnavailable) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"{method}: {record['pairing']['n_matched']} clips, {record['frames_scored']} frames in "
        f"{record['elapsed_s']:.1f} s -> {out / 'results.parquet'}, {out / 'summary.json'}"
    )


@metrics_app.command("list")
def list_metrics() -> None:
    """Every metric: name, variants (first = default), direction, inputs it needs, what it measures."""
    from rich.console import Console
    from rich.table import Table

    from talkface.evaluate.metrics.base import available_metrics, metric_import_errors

    table = Table(title="talkface metrics")
    for col in ("name", "variants", "direction", "needs", "doc"):
        table.add_column(col, overflow="fold")
    for cls in available_metrics():
        direction = {True: "higher", False: "lower", None: "match reference"}[cls.higher_is_better]
        table.add_row(
            cls.name,
            ", ".join(cls.variants) or "default",
            direction,
            ", ".join(sorted(cls.needs)) or "-",
            cls.doc,
        )
    console = Console(width=160)
    console.print(table)
    for module, err in metric_import_errors().items():
        console.print(f"[yellow]metrics module {module!r} unavailable: {err}[/yellow]")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and the ``metrics`` group to the root app."""
    app.command("evaluate")(evaluate)
    app.add_typer(metrics_app, name="metrics")
