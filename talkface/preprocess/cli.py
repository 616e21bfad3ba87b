"""CLI: ``talkface prepare <corpus>``, ``talkface inspect``, ``talkface features``, ``talkface demo``.

Thin wrappers: corpus recipes live in :mod:`talkface.preprocess.corpora`, the per-clip work in
:mod:`talkface.preprocess.pipeline`.
"""

from __future__ import annotations

from pathlib import Path

import typer

prepare_app = typer.Typer(
    help=(
        "Prepare a corpus into a dataset folder: aligned 68-point landmarks, aligned face crops (mp4 with "
        "audio), speech features at the video frame rate, manifest.parquet with splits. Resumable: run "
        "the same command again to continue; finished clips are skipped."
    ),
    no_args_is_help=True,
)

_OUT = typer.Option(..., "--out", "-o", help="Dataset folder to create or resume.")
_WORKERS = typer.Option(1, "--workers", "-j", min=1, help="Worker processes (one clip each at a time).")
_FPS = typer.Option(25.0, "--fps", help="Target frame rate; sources at other rates are resampled.")
_CROP = typer.Option(128, "--crop-size", help="Aligned crop size in pixels (128 or 256).")
_FEATURES = typer.Option(
    "logmel",
    "--features",
    help="Speech features: logmel (40-d), mfcc (13-d), deepspeech (29-d, needs --deepspeech-model).",
)
_DS_MODEL = typer.Option(
    None, "--deepspeech-model", help="DeepSpeech v0.1.0 output_graph.pb (for --features deepspeech)."
)
_DETECTOR = typer.Option("hog", "--detector", help="dlib face detector: hog (fast) or cnn (robust, slower).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Redo every clip, replacing earlier results.")
_LIMIT = typer.Option(None, "--limit", min=1, help="Prepare only the first N clips (a quick trial).")


def _run_prepare(
    recipe_name: str,
    root: Path,
    out: Path,
    split: str | None,
    workers: int,
    fps: float,
    crop_size: int,
    features: str,
    deepspeech_model: Path | None,
    detector: str,
    overwrite: bool,
    limit: int | None,
    speakers: str | None = None,
) -> None:
    from rich.table import Table

    from talkface.preprocess.corpora import get_recipe
    from talkface.preprocess.pipeline import ClipTools, PrepareConfig, run_prepare
    from talkface.preprocess.store import DatasetStore, SettingsMismatch
    from talkface.utils.progress import console, make_progress

    if crop_size not in (128, 256):
        raise typer.BadParameter("crop size must be 128 or 256", param_hint="--crop-size")
    feature_options: dict = {}
    if features == "deepspeech":
        if deepspeech_model is None:
            raise typer.BadParameter(
                "--features deepspeech needs --deepspeech-model PATH to the v0.1.0 output_graph.pb",
                param_hint="--deepspeech-model",
            )
        feature_options["model_path"] = str(deepspeech_model)
    config = PrepareConfig(
        fps=fps,
        crop_size=crop_size,
        landmark_options={"detector": detector},
        feature_backend=features,
        feature_options=feature_options,
    )
    recipe = get_recipe(recipe_name)
    kwargs = {"split": split} if split else {}
    discovery = recipe.discover(root, **kwargs)
    sources = discovery.clips
    if speakers:
        wanted = {s.strip() for s in speakers.split(",") if s.strip()}
        sources = [s for s in sources if s.speaker in wanted]
    if limit:
        sources = sources[:limit]
    for problem in discovery.problems:
        console.print(f"[yellow]note:[/yellow] {problem}")
    if not sources:
        console.print(f"[red]No clips found under {root} for recipe {recipe_name!r}.[/red]")
        raise typer.Exit(1)

    store = DatasetStore(out)
    try:
        tools = ClipTools(config)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    settings = {"corpus": recipe_name, **tools.settings()}
    try:
        store.claim(settings, overwrite=overwrite)
    except SettingsMismatch as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc

    done_before = sum(store.is_done(s.clip_id) for s in sources) if not overwrite else 0
    with make_progress() as progress:
        task = progress.add_task(f"prepare {recipe_name}", total=len(sources), completed=done_before, info="")
        counts = {"failed": 0, "done": 0}
        import time

        t0 = time.perf_counter()

        def on_clip(row: dict) -> None:
            counts["done"] += 1
            counts["failed"] += row["status"] == "failed"
            rate = counts["done"] / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, advance=1, info=f"{rate:.2f} clips/s, {counts['failed']} failed")

        summary = run_prepare(sources, store, config, workers=workers, overwrite=overwrite, on_clip=on_clip)

    manifest = store.read_manifest()
    in_run = manifest[manifest.clip_id.isin({s.clip_id for s in sources})]
    table = Table(title=f"{out}")
    table.add_column("status")
    table.add_column("clips", justify="right")
    for status, n in in_run.status.value_counts().items():
        table.add_row(str(status), str(n))
    console.print(table)
    if summary.prepared:
        console.print(
            f"prepared {summary.prepared} clips ({summary.frames} frames) in {summary.seconds:.1f} s; "
            f"skipped {summary.skipped} already finished"
        )
    else:
        console.print(f"all {summary.skipped} clips were already finished")
    failed = in_run[in_run.status == "failed"]
    if len(failed):
        console.print(
            f"[yellow]{len(failed)} clips failed (reasons in manifest.parquet, column error):[/yellow]"
        )
        for cid, err in zip(failed.clip_id[:20], failed.error[:20], strict=False):
            console.print(f"  {cid}: {str(err).splitlines()[0]}")
    flagged = in_run[in_run["flags"].fillna("") != ""]
    if len(flagged):
        console.print(f"{len(flagged)} clips carry flags (column flags), e.g. "
                      f"{flagged.clip_id.iloc[0]}: {flagged['flags'].iloc[0]}")
    console.print(f"manifest: {store.manifest_path}")
    if len(in_run) and (in_run.status != "failed").sum() == 0:
        raise typer.Exit(1)


@prepare_app.command("grid")
def prepare_grid(
    root: Path = typer.Argument(..., help="GRID root: Zenodo layout (s1/*.mpg, alignments/s1/*.align) "
                                "or the original site layout (s1/video/mpg_6000/*.mpg, s1/align/*.align)."),
    out: Path = _OUT,
    split: str = typer.Option("speaker-independent", "--split",
                              help="Split protocol for the manifest: speaker-independent or seen."),
    speakers: str = typer.Option(None, "--speakers", help="Comma-separated speakers to keep, e.g. s1,s2."),
    workers: int = _WORKERS,
    fps: float = _FPS,
    crop_size: int = _CROP,
    features: str = _FEATURES,
    deepspeech_model: Path = _DS_MODEL,
    detector: str = _DETECTOR,
    overwrite: bool = _OVERWRITE,
    limit: int = _LIMIT,
) -> None:
    """Prepare the GRID audio-visual corpus (Cooke et al. 2006)."""
    _run_prepare("grid", root, out, split, workers, fps, crop_size, features, deepspeech_model, detector,
                 overwrite, limit, speakers)


@prepare_app.command("folder")
def prepare_folder(
    root: Path = typer.Argument(..., help="A folder of talking-face videos (searched recursively)."),
    out: Path = _OUT,
    workers: int = _WORKERS,
    fps: float = _FPS,
    crop_size: int = _CROP,
    features: str = _FEATURES,
    deepspeech_model: Path = _DS_MODEL,
    detector: str = _DETECTOR,
    overwrite: bool = _OVERWRITE,
    limit: int = _LIMIT,
) -> None:
    """Prepare any folder of talking-face videos (VoxCeleb-style crops, your own recordings)."""
    _run_prepare("folder", root, out, None, workers, fps, crop_size, features, deepspeech_model, detector,
                 overwrite, limit)


def inspect(
    clip_id: str = typer.Argument(..., help="Clip id, e.g. s1_bbaf2n."),
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder."),
    frame: int = typer.Option(None, "--frame", help="Frame index (default: the middle frame)."),
    out: Path = typer.Option(Path("inspect.png"), "--out", "-o", help="PNG to write."),
) -> None:
    """Draw one frame of a prepared clip: source frame with landmarks beside the aligned crop with its own."""
    from talkface.preprocess.inspect import render_inspection
    from talkface.utils.progress import console

    try:
        path = render_inspection(data, clip_id, frame, out)
    except (FileNotFoundError, KeyError, IndexError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"wrote {path}")


def features(
    wav: Path = typer.Argument(..., help="Audio (or video) file; any sample rate, resampled to 16 kHz mono."),
    backend: str = typer.Option("logmel", "--backend", help="logmel, mfcc or deepspeech."),
    model: Path = typer.Option(None, "--model", help="Model file for backends that need one (deepspeech)."),
    fps: float = typer.Option(25.0, "--fps", help="Video frame rate the features are aligned to."),
    n_frames: int = typer.Option(None, "--n-frames", help="Frame count T (default: round(duration x fps))."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy of shape (T, 16, D) float32."),
) -> None:
    """Speech features of one file at a video frame rate, windowed as the paper windows DeepSpeech."""
    import numpy as np

    from talkface.preprocess import media
    from talkface.preprocess.features import get_feature_backend
    from talkface.utils import atomic
    from talkface.utils.progress import console
    from talkface.utils.provenance import provenance

    options = {"model_path": str(model)} if model else {}
    try:
        fb = get_feature_backend(backend, **options)
        audio = media.read_audio(wav, media.AUDIO_RATE)
    except (FileNotFoundError, KeyError, ValueError, TypeError, media.MediaError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    t = n_frames or max(1, int(round(len(audio) / media.AUDIO_RATE * fps)))
    feats = fb.compute(audio, t, fps)
    with atomic.atomic_path(out, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, feats.astype(np.float32))
    atomic.write_json(Path(str(out) + ".json"), provenance(
        source=str(wav), fps=fps, n_frames=t, shape=list(feats.shape), features=fb.settings()))
    console.print(f"wrote {out} {tuple(feats.shape)} ({fb.name}) and {out}.json")


def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Where the demo writes its files."),
) -> None:
    """Build an example clip from data inside the dependencies, prepare it, draw an inspection PNG."""
    from talkface.preprocess.demo import run_demo

    run_demo(out)


def register(app: typer.Typer) -> None:
    app.add_typer(prepare_app, name="prepare")
    app.command("inspect")(inspect)
    app.command("features")(features)
    app.command("demo")(demo)
