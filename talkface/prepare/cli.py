"""CLI: ``talkface prepare <corpus>``, ``talkface inspect``, ``talkface features``.

Thin wrappers: corpus recipes live in :mod:`talkface.prepare.corpora`, the per-clip work in
:mod:`talkface.prepare.run`. One ``prepare <corpus>`` command is generated for every recipe in
the corpus registry, with the shared options declared once (``_shared_prepare_options``) and the
recipe's own options (``CorpusRecipe.options``) after them.
"""

from __future__ import annotations

import inspect as _inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import typer

from talkface.utils.cli_kit import fail, generated_command, keyword, renamed_option

prepare_app = typer.Typer(
    help=(
        "Prepare a corpus into a dataset folder: aligned 68-point landmarks, aligned face crops (mp4 with "
        "audio), speech features at the video frame rate, manifest.parquet with split protocols. "
        "Resumable: run the same command again to continue; finished clips are skipped. Ctrl-C stops "
        "with every finished clip kept. One prepare runs into a folder at a time (a lock file)."
    ),
    no_args_is_help=True,
)


class _SharedOption(NamedTuple):
    """One option of every ``prepare <corpus>`` command: ``--<param with dashes>`` plus ``short``."""

    param: str
    annotation: Any
    default: Any
    help: str
    short: tuple[str, ...] = ()
    settings: dict[str, Any] = {}  # other typer.Option settings (min, hidden)

    def parameter(self) -> _inspect.Parameter:
        flag = "--" + self.param.replace("_", "-")
        return keyword(self.param, self.annotation,
                       typer.Option(self.default, flag, *self.short, help=self.help, **self.settings))


def _shared_prepare_options(recipe: type) -> list[_inspect.Parameter]:
    """The options of every ``prepare <corpus>`` command, declared once (help names the protocols)."""
    from talkface.core.executors import RAY_ADDRESS_HELP, executor_help

    protocols = ", ".join(recipe.splits)
    face_default = getattr(recipe, "face_selection", "score")
    shared = (
        _SharedOption("out", Path, ..., "Dataset folder to create, resume, or add a split protocol to.",
                      ("-o",)),
        _SharedOption("protocol", str | None, None,
                      f"Split protocol: {protocols} (default {recipe.splits[0]}), or unseen-identity with "
                      "--test-speakers. Preparing again into the same --out with another protocol adds it "
                      "(manifest column split_<protocol>) and redoes no clip."),
        _SharedOption("test_speakers", str | None, None,
                      "With --protocol unseen-identity: comma-separated speakers whose clips are the test "
                      "part (e.g. s4); no clip of theirs is in train or val, and 10% of the other "
                      "speakers' clips (seeded hash) are val. Recorded in the dataset."),
        _SharedOption("split", str | None, None, "Deprecated name of --protocol.", settings={"hidden": True}),
        _SharedOption("speakers", str | None, None, "Comma-separated speakers to keep, e.g. s1,s2."),
        _SharedOption("workers", int, 1, "Worker processes (one clip each at a time).", ("-j",), {"min": 1}),
        _SharedOption("fps", float, 25.0, "Target frame rate; sources at other rates are resampled."),
        _SharedOption("crop_size", int, 128, "Aligned crop size in pixels (128 or 256)."),
        _SharedOption("features", str, "logmel",
                      "Speech features: logmel (40-d), mfcc (13-d), deepspeech (29-d, needs "
                      "--deepspeech-model)."),
        _SharedOption("deepspeech_model", Path | None, None,
                      "DeepSpeech v0.1.0 output_graph.pb (for --features deepspeech)."),
        _SharedOption("detector", str, "hog",
                      "dlib face detector: hog (fast), cnn (alias mmod: finds faces in low light and near "
                      "profile, ~20x slower), or hog,cnn (cnn only on the frames hog misses)."),
        _SharedOption("landmarks", str, "dlib",
                      "Landmark backend: dlib (68-point predictor, default) or fan (face-alignment's 2D-FAN; "
                      "needs --fan-model, docs/landmarks.md)."),
        _SharedOption("fan_model", Path | None, None,
                      "face-alignment 2D-FAN file (2DFAN4-cd938726ad.zip or 2DFAN4-11f355bf06.pth.tar) for "
                      "--landmarks fan; never downloaded."),
        _SharedOption("face", str | None, None,
                      "With several faces in a frame, track the largest or the most confident (score) one "
                      f"(default {face_default})."),
        _SharedOption("executor", str, "process", executor_help("the dataset folder")),
        _SharedOption("ray_address", str | None, None, RAY_ADDRESS_HELP),
        _SharedOption("overwrite", bool, False, "Redo every clip, replacing earlier results."),
        _SharedOption("limit", int | None, None, "Prepare only the first N clips (a quick trial).",
                      settings={"min": 1}),
    )
    return [option.parameter() for option in shared]


def _recipe_options(recipe: type) -> list[_inspect.Parameter]:
    params = []
    for option in recipe.options:
        help_text = option.help + (f" One of: {', '.join(option.choices)}." if option.choices else "")
        params.append(keyword(option.param, type(option.default),
                              typer.Option(option.default, option.flag, help=help_text)))
    return params


def _make_prepare_command(name: str, recipe: type) -> Callable[..., None]:
    """``prepare <name>``: the recipe's root argument, the shared options, then the recipe's own."""
    recipe_params = {o.param for o in recipe.options}

    def body(values: dict[str, Any]) -> None:
        corpus_options = {k: values.pop(k) for k in list(values) if k in recipe_params}
        _run_prepare(name, corpus_options=corpus_options, **values)

    root = _inspect.Parameter("root", _inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Path,
                              default=typer.Argument(..., help=recipe.root_help))
    return generated_command(f"prepare_{name.replace('-', '_')}",
                             (recipe.__doc__ or f"Prepare the {name} corpus.").strip().splitlines()[0],
                             [root, *_shared_prepare_options(recipe), *_recipe_options(recipe)], body)


def _register_prepare_commands() -> None:
    from talkface.prepare.corpora import CORPORA, available_recipes

    for name in available_recipes():
        prepare_app.command(name)(_make_prepare_command(name, CORPORA.get(name)))


def _run_prepare(
    recipe_name: str,
    root: Path,
    out: Path,
    protocol: str | None,
    split: str | None,
    speakers: str | None,
    workers: int,
    fps: float,
    crop_size: int,
    features: str,
    deepspeech_model: Path | None,
    detector: str,
    overwrite: bool,
    limit: int | None,
    corpus_options: dict[str, Any],
    face: str | None = None,
    executor: str = "process",
    ray_address: str | None = None,
    landmarks: str = "dlib",
    fan_model: Path | None = None,
    test_speakers: str | None = None,
) -> None:
    from talkface.core.executors import ExecutorError
    from talkface.prepare.corpora import CorpusError, get_recipe
    from talkface.prepare.run import ClipTools, PrepareConfig, PrepareInterrupted, run_prepare
    from talkface.store.dataset_writer import DatasetStore, SettingsMismatch
    from talkface.store.splits import UNSEEN_IDENTITY, write_protocol_rule
    from talkface.utils.lock import FolderLocked
    from talkface.utils.progress import console, make_progress

    protocol = renamed_option("--protocol", protocol, "--split", split,
                              "in prepare it names a split protocol")
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
    from talkface.core.executors import EXECUTORS
    from talkface.core.landmarks.dlib_backend import SELECTIONS, parse_detectors
    from talkface.prepare.corpora import CORPORA

    try:
        detector = ",".join(parse_detectors(detector))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--detector") from exc
    face = face or getattr(CORPORA.get(recipe_name), "face_selection", "score")
    if face not in SELECTIONS:
        raise typer.BadParameter(f"choose one of {', '.join(SELECTIONS)}", param_hint="--face")
    if executor not in EXECUTORS:
        raise typer.BadParameter(f"choose one of {', '.join(EXECUTORS)}", param_hint="--executor")
    if ray_address and executor != "ray":
        raise typer.BadParameter("--ray-address needs --executor ray", param_hint="--ray-address")
    landmark_options: dict[str, Any] = {"detector": detector}
    from talkface.core.landmarks import available_landmark_backends

    if landmarks not in available_landmark_backends():
        raise typer.BadParameter(f"choose one of {', '.join(available_landmark_backends())}",
                                 param_hint="--landmarks")
    if fan_model is not None and landmarks != "fan":
        raise typer.BadParameter("--fan-model needs --landmarks fan", param_hint="--fan-model")
    if landmarks == "fan":  # a missing or unloadable file is refused below (exit 2) when the backend loads
        landmark_options["model_path"] = str(fan_model) if fan_model else None
    if face != "score":  # the default is left out so datasets prepared before the option still match
        landmark_options["select"] = face
    config = PrepareConfig(
        landmark_backend=landmarks,
        fps=fps,
        crop_size=crop_size,
        landmark_options=landmark_options,
        feature_backend=features,
        feature_options=feature_options,
        corpus_options=dict(corpus_options),
    )
    recipe = get_recipe(recipe_name)
    unseen_rule = None
    try:
        if protocol == UNSEEN_IDENTITY or test_speakers:
            unseen_rule = _unseen_identity(protocol, test_speakers, out)
        discovery = recipe.discover(root, split=None if unseen_rule else protocol, **corpus_options)
        if unseen_rule is not None:
            _assign_unseen(discovery, unseen_rule)
            write_protocol_rule(out, UNSEEN_IDENTITY, unseen_rule)
    except CorpusError as exc:
        fail(exc)
    protocol = protocol or recipe.splits[0]
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
        fail(exc)

    done_before = sum(store.is_done(s.clip_id) for s in sources) if not overwrite else 0
    try:
        with make_progress() as progress:
            task = progress.add_task(f"prepare {recipe_name}", total=len(sources), completed=done_before,
                                     info="")
            counts = {"failed": 0, "done": 0}
            t0 = time.perf_counter()

            def on_clip(row: dict) -> None:
                counts["done"] += 1
                counts["failed"] += row["status"] == "failed"
                rate = counts["done"] / max(time.perf_counter() - t0, 1e-9)
                progress.update(task, advance=1, info=f"{rate:.2f} clips/s, {counts['failed']} failed")

            summary = run_prepare(sources, store, config, workers=workers, overwrite=overwrite,
                                  on_clip=on_clip, protocol=protocol, tools=tools, corpus=recipe_name,
                                  executor=executor, ray_address=ray_address)
    except (SettingsMismatch, FolderLocked, ExecutorError) as exc:
        fail(exc)
    except PrepareInterrupted as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(130) from None
    _report(store, sources, summary, out)


def _unseen_identity(protocol: str | None, test_speakers: str | None, out: Path) -> dict[str, Any]:
    """The unseen-identity rule asked for; refused when it is half asked, or when ``out`` already holds
    the protocol made with other test speakers (a dataset's protocol never changes meaning)."""
    from talkface.store.splits import UNSEEN_IDENTITY, CorpusError, read_protocol_rule, unseen_identity_rule

    if protocol != UNSEEN_IDENTITY:
        raise CorpusError(f"--test-speakers goes with --protocol {UNSEEN_IDENTITY}")
    rule = unseen_identity_rule((test_speakers or "").split(","))
    held = read_protocol_rule(out, UNSEEN_IDENTITY)
    if held is not None and held != rule:
        held_speakers = ",".join(held.get("test_speakers", []))
        raise CorpusError(f"{out} holds protocol {UNSEEN_IDENTITY} made with test speakers {held_speakers}, "
                          f"not {','.join(rule['test_speakers'])}: prepare into another --out for another "
                          "choice")
    return rule


def _assign_unseen(discovery: Any, rule: dict[str, Any]) -> None:
    """The discovered clips' parts under the unseen-identity rule, with a note when this corpus folder
    holds no test speaker or only test speakers (another folder prepared into the same --out may hold
    the others: GRID's normal and high-quality layouts often live apart)."""
    import dataclasses

    from talkface.store.splits import UNSEEN_IDENTITY, unseen_identity_part

    found = {c.speaker for c in discovery.clips}
    missing = [s for s in rule["test_speakers"] if s not in found]
    if missing:
        discovery.problems.append(f"test speaker(s) {', '.join(missing)}: no clips under this corpus folder "
                                  "(prepare the folder that holds them into the same --out)")
    if found and found <= set(rule["test_speakers"]):
        discovery.problems.append("every speaker under this corpus folder is a test speaker: prepare the "
                                  "training speakers' folder into the same --out")
    discovery.clips = [dataclasses.replace(c, split=unseen_identity_part(c.clip_id, c.speaker, rule),
                                           protocol=UNSEEN_IDENTITY) for c in discovery.clips]


def _report(store: Any, sources: list, summary: Any, out: Path) -> None:
    """The end-of-run summary: statuses, protocol (added or not), failures, flags."""
    from rich.table import Table

    from talkface.store.dataset import PARTS, Dataset, split_column
    from talkface.utils.progress import console

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
    change = summary.protocol
    info = Dataset.open(store.root).info
    counts = info.protocols.get(change.protocol, {})
    parts = ", ".join(f"{p} {counts[p]}" for p in sorted(counts, key=lambda p: (p not in PARTS, PARTS.index(p)
                                                                                if p in PARTS else 0, p)))
    others = [p for p in info.protocols if p != change.protocol]
    if change.added and others:
        console.print(
            f"added split protocol {change.protocol!r} (column {split_column(change.protocol)}; usable "
            f"clips: {parts}) beside {', '.join(repr(p) for p in others)}, whose columns are unchanged; "
            f"the default protocol (column split) stays {info.default_protocol!r}; no clip was redone for it"
        )
    else:
        default = ", the default" if change.protocol == info.default_protocol else ""
        console.print(f"split protocol {change.protocol!r} (column {split_column(change.protocol)}"
                      f"{default}); usable clips: {parts}")
    if change.moved:
        console.print(f"[yellow]{change.moved} clips changed part within protocol "
                      f"{change.protocol!r}[/yellow]")
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


def inspect(
    clip_id: str = typer.Argument(..., help="Clip id, e.g. s1_bbaf2n."),
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder."),
    frame: int = typer.Option(None, "--frame", help="Frame index (default: the middle frame)."),
    out: Path = typer.Option(Path("inspect.png"), "--out", "-o", help="PNG to write."),
) -> None:
    """Draw one frame of a prepared clip: source frame with landmarks beside the aligned crop with its own."""
    from talkface.core.media import MediaError
    from talkface.prepare.inspect import render_inspection
    from talkface.utils.progress import console

    try:
        path = render_inspection(data, clip_id, frame, out)
    # ValueError covers InspectError and DatasetError; OSError a missing clip file or an unwritable --out;
    # MediaError and IndexError a source video or crop that no longer decodes as far as the frame.
    except (ValueError, OSError, IndexError, MediaError) as exc:
        fail(exc, one_line=True)
    console.print(f"wrote {path}")


def features(
    wav: Path = typer.Argument(..., help="Audio (or video) file; any sample rate, resampled to 16 kHz mono."),
    features: str = typer.Option(None, "--features", help="logmel (default), mfcc or deepspeech."),
    deepspeech_model: Path = typer.Option(
        None, "--deepspeech-model", help="DeepSpeech v0.1.0 output_graph.pb (for --features deepspeech)."),
    backend: str = typer.Option(None, "--backend", hidden=True, help="Deprecated name of --features."),
    model: Path = typer.Option(None, "--model", hidden=True, help="Deprecated name of --deepspeech-model."),
    fps: float = typer.Option(25.0, "--fps", help="Video frame rate the features are aligned to."),
    n_frames: int = typer.Option(None, "--n-frames", help="Frame count T (default: round(duration x fps))."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npy of shape (T, 16, D) float32."),
) -> None:
    """Speech features of one file at a video frame rate, windowed as the paper windows DeepSpeech."""
    import numpy as np

    from talkface.core import media
    from talkface.core.features import get_feature_backend
    from talkface.utils import atomic
    from talkface.utils.progress import console
    from talkface.utils.provenance import provenance

    features = renamed_option("--features", features, "--backend", backend, "as in prepare")
    deepspeech_model = renamed_option("--deepspeech-model", deepspeech_model, "--model", model,
                                      "as in prepare and generate")
    features = features or "logmel"
    options = {"model_path": str(deepspeech_model)} if deepspeech_model else {}
    try:
        fb = get_feature_backend(features, **options)
        audio = media.read_audio(wav, media.AUDIO_RATE)
    except (FileNotFoundError, KeyError, ValueError, TypeError, media.MediaError) as exc:
        fail(exc)
    t = n_frames or max(1, int(round(len(audio) / media.AUDIO_RATE * fps)))
    feats = fb.compute(audio, t, fps)
    with atomic.atomic_path(out, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, feats.astype(np.float32))
    atomic.write_json(Path(str(out) + ".json"), provenance(
        source=str(wav), fps=fps, n_frames=t, shape=list(feats.shape), features=fb.settings()))
    console.print(f"wrote {out} {tuple(feats.shape)} ({fb.name}) and {out}.json")


_register_prepare_commands()


def register(app: typer.Typer) -> None:
    app.add_typer(prepare_app, name="prepare")
    app.command("inspect")(inspect)
    app.command("features")(features)
