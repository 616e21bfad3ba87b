"""``talkface demo``: the whole job on real clips, each step through the public command line.

    prepare (the 12 built-in GRID s1 clips, split 'demo') -> train pipeline (a short budget)
    -> generate the held-out clips -> the 5 built-in baselines -> evaluate each
    -> leaderboard (Markdown printed; HTML, CSV, LaTeX and plots written) -> study export (A/B: ours,
    static-frame, real) -> compare (real | ours | static-frame) -> a summary naming the files to open

Every step calls a ``talkface`` command in this process (``talkface.cli.app``), the same command a user
would type, and the step list prints that command. Layout of ``OUT/`` (default ``demo-output/``)::

    data/                 the prepared dataset (not with --data: the given dataset is only read)
    runs/{lm,blink,tex}/  the trained stages
    videos/<method>/      ours, ground-truth, static-frame, mean-face, oracle-landmarks, no-blinks
    results/              talkface evaluate's results (one folder, every method)
    leaderboard/          leaderboard.{md,html,csv,tex} and plots (*.png)
    study/                site/ (the questionnaire to publish) and key.json (kept private)
    compare.mp4           real | ours | static-frame, one held-out clip, with its audio
    SUMMARY.md            what the run printed at the end
    demo.json             the run's settings and each finished step (what a rerun skips)
    logs/                 the traceback of a step that failed unexpectedly

Resumable: a step is skipped when ``demo.json`` records it as finished and its outputs are still
there and complete; a step whose input step ran again is redone (its old outputs removed first). One
demo writes into a folder at a time (``talkface.utils.lock.WriterLock``); a folder holding a demo made
with other settings (``--quick``, ``--data``, ``--gpu``) is refused rather than mixed.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from talkface import __version__
from talkface.demo import data as demo_data
from talkface.utils import atomic
from talkface.utils.paths import PathUnder

STATE_FILE = "demo.json"
STATE_FORMAT = "talkface-demo"
STATE_VERSION = 1
SUMMARY_FILE = "SUMMARY.md"
OURS = "ours"
SHIPPED = "shipped"  # the model shipped with talkface (talkface/data/pretrained), when this install has it
BASELINES = ("ground-truth", "static-frame", "mean-face", "oracle-landmarks", "no-blinks")
TRAINED_BASELINES = ("mean-face", "oracle-landmarks", "no-blinks")
STUDY_METHODS = (OURS, "static-frame")  # plus the real recordings
STUDY_MAX_CLIPS = 20  # with --data, a large test part: the study draws 20 of its clips
PLOTS = (  # (file, leaderboard plot arguments)
    ("lmd_mouth.png", ["--metric", "lmd_mouth"]),
    ("psnr_box.png", ["--metric", "psnr", "--kind", "box"]),
    ("blinks.png", ["--kind", "blinks"]),
)


class DemoError(RuntimeError):
    """Bad input or a refused output folder: one sentence, exit status 2."""


class StepFailed(RuntimeError):
    """A step's command failed; its own message was printed above."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Profile:
    """How much work the demo does: ``full`` (make demo) or ``quick`` (CI)."""

    name: str
    train_steps: dict[str, int]
    train_budget: str  # wall-time cap for all stages; the steps usually end first on 2 idle cores
    metrics: str | None  # None: every metric whose inputs are available
    participants: int
    eval_workers: int
    prepare_workers: int = 2
    calibration_clips: int = 0  # blink calibration after training (train pipeline --calibration-clips)

    def steps_arg(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.train_steps.items())


# Budgets measured on 2 cores (docs/demo.md). The training numbers are a demonstration of the workflow,
# far below the recipe's 1500/400/1000 steps that beat the still frame (docs/models.md). identity_dlib is
# left out of the demo's metrics: its face descriptors cost more than every other metric together
# (about a minute over the six methods); `talkface evaluate` computes it by default.
FULL_METRICS = "lmd_mouth,lmd_face,psnr,ssim,cpbd,blink_rate,blink_duration,blink_interval,identity_dlib"
QUICK_METRICS = "lmd_mouth,psnr,ssim,blink_rate,blink_duration"
FULL = Profile("full", {"lm": 250, "blink": 150, "tex": 100}, "4m", FULL_METRICS, 12, 1, calibration_clips=6)
QUICK = Profile("quick", {"lm": 20, "blink": 10, "tex": 4}, "40s", QUICK_METRICS, 4, 1)


@dataclass
class DemoConfig:
    out: Path = Path("demo-output")
    quick: bool = False
    data: Path | None = None  # a prepared dataset; None: prepare the built-in clips
    protocol: str | None = None  # with --data: the split protocol (default: the dataset's own)
    gpu: bool = False

    @property
    def profile(self) -> Profile:
        return QUICK if self.quick else FULL


@dataclass
class Step:
    key: str
    title: str
    command: Callable[[Context], list[list[str]]]  # the talkface command lines this step runs
    complete: Callable[[Context], bool]  # are the outputs there and complete?
    outputs: Callable[[Context], list[Path]] = lambda ctx: []  # removed when an input step is redone
    deps: tuple[str, ...] = ()
    after: Callable[[Context], str] | None = None  # extra work after the commands; returns a note
    describe: Callable[[Context], str] = lambda ctx: ""  # one line for the step list when finished


@dataclass
class Context:
    config: DemoConfig
    out: Path
    data: Path
    protocol: str
    held_out: list[str]
    console: Console
    state: dict[str, Any] = field(default_factory=dict)
    app: Any = None  # the talkface Typer app whose commands the steps run

    @property
    def profile(self) -> Profile:
        return self.config.profile

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    runs = PathUnder("out", "runs")
    results = PathUnder("out", "results")
    board = PathUnder("out", "leaderboard")
    study = PathUnder("out", "study")
    compare_video = PathUnder("out", "compare.mp4")

    @property
    def compare_clip(self) -> str:
        return self.held_out[0]

    def videos(self, method: str) -> Path:
        return self.path("videos", method)


# The talkface commands, called in this process ---------------------------------------------------------


def invoke(app: Any, args: Sequence[str]) -> int:
    """Run ``talkface ARGS`` (a command of ``app``, the talkface Typer app) in this process; return its
    exit status (a command's own errors are printed by the command; an unexpected exception propagates).
    The app is given, not imported: the demo stands below the command line that holds it."""
    import importlib

    import typer
    import typer.main

    # click's exceptions, wherever this typer takes click from (typer >= 0.2x vendors it as typer._click,
    # older releases depend on the click package): never import click directly
    click_exceptions = importlib.import_module(typer.BadParameter.__module__)
    exits = tuple({typer.Exit, getattr(click_exceptions, "Exit", typer.Exit)})
    aborts = tuple({typer.Abort, getattr(click_exceptions, "Abort", typer.Abort)})
    command = typer.main.get_command(app)
    try:
        result = command.main(args=list(args), prog_name="talkface", standalone_mode=False)
    except exits as exc:
        return int(exc.exit_code)
    except click_exceptions.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except aborts:
        raise KeyboardInterrupt from None
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return result if isinstance(result, int) else 0


def _device_args(ctx: Context) -> list[str]:
    return ["--device", "cuda"] if ctx.config.gpu else []


def _gen_common(ctx: Context, checkpoints: Path | None = None) -> list[str]:
    return ["--data", str(ctx.data), "--protocol", ctx.protocol, "--part", "test",
            "--checkpoints", str(checkpoints or ctx.runs), *_device_args(ctx)]


def shipped_model() -> Path | None:
    """The folder of the model shipped with talkface, None when this install carries none."""
    from talkface.generation.pretrained import pretrained_dir

    return pretrained_dir()


def demo_methods(shipped: bool) -> tuple[str, ...]:
    """The methods the demo generates and scores: the briefly trained pipeline, the shipped model when
    there is one, and the baselines."""
    return (OURS, *((SHIPPED,) if shipped else ()), *BASELINES)


# Output checks ---------------------------------------------------------------------------------------


def _videos_complete(ctx: Context, method: str) -> bool:
    from talkface.store.generated_videos import is_complete

    return is_complete(ctx.videos(method), list(ctx.held_out))


def _evaluated(ctx: Context, method: str) -> bool:
    from talkface.store.results import ResultsStore

    store = ResultsStore(ctx.results)
    if not store.parquet_path.is_file() or not store.run_path(method).is_file():
        return False
    try:
        rows = store.read(method)
    except Exception:  # noqa: BLE001  (an unreadable file: evaluate again)
        return False
    return set(ctx.held_out) <= {str(c) for c in rows["clip_id"].unique()}


def _trained(ctx: Context) -> bool:
    from talkface.store.checkpoints import CheckpointError, find_stage

    try:
        return all(find_stage(ctx.runs, s).weights_path().is_file()
                   for s in ("landmarks", "blinks", "texture"))
    except (CheckpointError, OSError):
        return False


def _prepared(ctx: Context) -> bool:
    from talkface.store.dataset import Dataset, DatasetError

    try:
        ds = Dataset.open(ctx.data)
        if not set(demo_data.DEMO_SPLIT) <= {r.clip_id for r in ds.records()}:
            return False
        parts = ds.parts(demo_data.DEMO_PROTOCOL)
    except DatasetError:
        return False
    usable = set(ds.usable_ids())
    expected = {p: sorted(c for c, q in demo_data.DEMO_SPLIT.items() if q == p and c in usable)
                for p in ("train", "val", "test")}
    return parts.as_dict() == expected


def _board_files(ctx: Context) -> list[Path]:
    return [ctx.board / f"leaderboard.{ext}" for ext in ("md", "html", "csv", "tex")] + \
        [ctx.board / name for name, _ in PLOTS]


def _board_complete(ctx: Context) -> bool:
    summary = ctx.results / "summary.json"
    files = _board_files(ctx)
    if not summary.is_file() or not all(f.is_file() and f.stat().st_size > 0 for f in files):
        return False
    return min(f.stat().st_mtime for f in files) >= summary.stat().st_mtime


def _study_complete(ctx: Context) -> bool:
    return (ctx.study / "key.json").is_file() and (ctx.study / "site" / "index.html").is_file()


# Steps -------------------------------------------------------------------------------------------------


def _prepare_commands(ctx: Context) -> list[list[str]]:
    root = demo_data.demo_data_root()
    return [["prepare", "grid", str(root), "--out", str(ctx.data), "--protocol", "seen",
             "--workers", str(ctx.profile.prepare_workers)]]


def add_demo_protocol(data: Path) -> str:
    """Write the committed demo split into the prepared store as protocol ``demo`` (through the dataset
    contract's writer, under the dataset's writer lock)."""
    from talkface.store.dataset import Dataset
    from talkface.store.dataset_writer import DatasetStore
    from talkface.utils.lock import WriterLock

    with WriterLock(data, "demo split"):
        store = DatasetStore(data)
        store.add_protocol(demo_data.DEMO_PROTOCOL, demo_data.DEMO_SPLIT)
        store.write_manifest()
    ds = Dataset.open(data)
    counts = ds.parts(demo_data.DEMO_PROTOCOL).counts()
    n_ok = len(ds.usable_ids())
    return (f"{len(ds)} clips prepared, {n_ok} usable; protocol 'demo': train {counts['train']}, "
            f"val {counts['val']}, test {counts['test']}")


def _prepare_note(ctx: Context) -> str:
    note = add_demo_protocol(ctx.data)
    ctx.held_out = _held_out(ctx.data, ctx.protocol)
    return note


def _train_commands(ctx: Context) -> list[list[str]]:
    args = ["train", "pipeline", "--data", str(ctx.data), "--protocol", ctx.protocol, "--out", str(ctx.runs),
            "--steps", ctx.profile.steps_arg(), "--budget", ctx.profile.train_budget,
            "--calibration-clips", str(ctx.profile.calibration_clips)]
    if ctx.config.gpu:
        args += ["--accelerator", "gpu"]
    return [args]


def steps_reached(runs: Path) -> str:
    """``lm N, blink N, tex N``: the step each stage's run under ``runs`` reached."""
    from talkface.store.checkpoints import find_stage

    return ", ".join(f"{short} {find_stage(runs, stage).step}"
                     for stage, short in (("landmarks", "lm"), ("blinks", "blink"), ("texture", "tex")))


def _train_note(ctx: Context) -> str:
    return "steps reached: " + steps_reached(ctx.runs)


def _generate_step(method: str) -> Step:
    if method == OURS:
        def command(ctx: Context) -> list[list[str]]:
            return [["generate", *_gen_common(ctx), "--out", str(ctx.videos(OURS))]]
        title, deps = "generate ours (the trained pipeline)", ("train",)
    elif method == SHIPPED:
        def command(ctx: Context) -> list[list[str]]:
            return [["generate", *_gen_common(ctx, shipped_model()), "--out", str(ctx.videos(SHIPPED))]]
        title, deps = "generate shipped (the model shipped with talkface, no training)", ("prepare",)
    else:
        def command(ctx: Context) -> list[list[str]]:
            return [["baseline", method, *_gen_common(ctx), "--out", str(ctx.videos(method))]]
        title = f"baseline {method}"
        deps = ("train",) if method in TRAINED_BASELINES else ("prepare",)
    return Step(
        key=f"videos:{method}", title=title, command=command,
        complete=lambda ctx: _videos_complete(ctx, method),
        outputs=lambda ctx: [ctx.videos(method)], deps=deps,
        describe=lambda ctx: f"{len(ctx.held_out)} videos in {ctx.videos(method)}",
    )


def _evaluate_step(method: str) -> Step:
    def command(ctx: Context) -> list[list[str]]:
        args = ["evaluate", "--generated", str(ctx.videos(method)), "--data", str(ctx.data),
                "--protocol", ctx.protocol, "--part", "test", "--method", method, "--out", str(ctx.results),
                "--workers", str(2 if ctx.config.data is not None else ctx.profile.eval_workers)]
        if ctx.profile.metrics:
            args += ["--metrics", ctx.profile.metrics]
        return [args]

    return Step(key=f"evaluate:{method}", title=f"evaluate {method}", command=command,
                complete=lambda ctx: _evaluated(ctx, method), deps=(f"videos:{method}",),
                describe=lambda ctx: f"rows in {ctx.results}")


def _board_commands(ctx: Context) -> list[list[str]]:
    cmds = [["leaderboard", "build", str(ctx.results), "--format", "all", "--out", str(ctx.board)]]
    for name, args in PLOTS:
        cmds.append(["leaderboard", "plot", str(ctx.results), *args, "--out", str(ctx.board / name)])
    return cmds


def _board_note(ctx: Context) -> str:
    ctx.console.print(escape((ctx.board / "leaderboard.md").read_text()), highlight=False)
    return f"{ctx.board}/leaderboard.html and {len(PLOTS)} plots"


def _study_commands(ctx: Context) -> list[list[str]]:
    args = ["study", "export"]
    for method in STUDY_METHODS:
        args += ["--method", f"{method}={ctx.videos(method)}"]
    n_clips = min(len(ctx.held_out), STUDY_MAX_CLIPS)
    args += ["--method", f"real={ctx.data}", "--design", "ab", "--clips", str(n_clips),
             "--participants", str(ctx.profile.participants), "--seed", "0",
             "--title", "talkface demo: which video looks better?", "--workers", "2", "--out", str(ctx.study)]
    return [args]


def _compare_commands(ctx: Context) -> list[list[str]]:
    return [["compare", f"real={ctx.data}", f"{OURS}={ctx.videos(OURS)}",
             f"static-frame={ctx.videos('static-frame')}", "--clip", ctx.compare_clip,
             "--out", str(ctx.compare_video)]]


def build_steps(given_data: bool, shipped: bool | None = None) -> list[Step]:
    """The demo's steps; ``shipped`` (default: whether this install carries a shipped model) adds its
    generation and scoring."""
    methods = demo_methods(shipped_model() is not None if shipped is None else shipped)
    steps: list[Step] = []
    if not given_data:
        steps.append(Step(
            key="prepare", title="prepare the 12 built-in GRID s1 clips, split 'demo'",
            command=_prepare_commands, complete=_prepared, after=_prepare_note,
            outputs=lambda ctx: [],  # prepare resumes by itself; its outputs are never removed
            describe=lambda ctx: f"{ctx.data} (held out: {', '.join(ctx.held_out)})",
        ))
    steps.append(Step(
        key="train", title="train pipeline (short budget)", command=_train_commands, complete=_trained,
        outputs=lambda ctx: [ctx.runs], deps=("prepare",), after=_train_note,
        describe=lambda ctx: str(ctx.runs),
    ))
    for method in methods:
        steps.append(_generate_step(method))
    for method in methods:
        steps.append(_evaluate_step(method))
    steps.append(Step(
        key="leaderboard", title="leaderboard: table (md, html, csv, tex) and plots", command=_board_commands,
        complete=_board_complete, outputs=lambda ctx: [ctx.board],
        deps=tuple(f"evaluate:{m}" for m in methods), after=_board_note,
        describe=lambda ctx: str(ctx.board / "leaderboard.html"),
    ))
    steps.append(Step(
        key="study", title="study export: A/B of ours, static-frame, real", command=_study_commands,
        complete=_study_complete, outputs=lambda ctx: [ctx.study],
        deps=tuple(f"videos:{m}" for m in STUDY_METHODS) + ("prepare",),
        describe=lambda ctx: str(ctx.study / "site" / "index.html"),
    ))
    steps.append(Step(
        key="compare", title="compare: real | ours | static-frame", command=_compare_commands,
        complete=lambda ctx: ctx.compare_video.is_file(), outputs=lambda ctx: [ctx.compare_video],
        deps=("prepare", f"videos:{OURS}", "videos:static-frame"),
        describe=lambda ctx: f"{ctx.compare_video} (clip {ctx.compare_clip})",
    ))
    return steps


# Input checks ------------------------------------------------------------------------------------------


def _held_out(data: Path, protocol: str) -> list[str]:
    from talkface.store.dataset import Dataset

    return list(Dataset.open(data).parts(protocol).test)


def check_given_dataset(data: Path, protocol: str | None) -> tuple[str, list[str]]:
    """The protocol to use and its test clips; a :class:`DemoError` when ``data`` cannot be used."""
    from talkface.store.dataset import Dataset, DatasetError

    try:
        ds = Dataset.open(data)
        protocol = ds.check_protocol(protocol)
        parts = ds.parts(protocol)
    except DatasetError as exc:
        raise DemoError(f"--data {data}: {exc}") from None
    if not parts.train:
        raise DemoError(f"--data {data}: protocol {protocol!r} has no usable training clips "
                        f"(it holds {parts.counts()}); pick another with --protocol")
    if not parts.test:
        raise DemoError(f"--data {data}: protocol {protocol!r} has no usable test clips to generate and "
                        f"score (it holds {parts.counts()}); pick another with --protocol")
    return protocol, list(parts.test)


def check_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise DemoError("--gpu: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                        "run without --gpu")


def settings_of(config: DemoConfig, protocol: str) -> dict[str, Any]:
    p = config.profile
    return {"mode": p.name, "data": str(config.data.resolve()) if config.data else "built-in GRID s1 clips",
            "protocol": protocol, "gpu": config.gpu, "train_steps": p.steps_arg(),
            "train_budget": p.train_budget, "metrics": p.metrics or "all available"}


def _load_state(out: Path) -> dict[str, Any] | None:
    import json

    path = out / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DemoError(f"{path} cannot be read ({exc}): delete {out} to start the demo over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DemoError(f"{path} is not a talkface demo record: use another --out")
    return state


def check_out_folder(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The demo record of ``out`` (a new one for a new or empty folder); a :class:`DemoError` when the
    folder holds something else or a demo made with other settings."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} is a file: give a folder")
    state = _load_state(out) if out.exists() else None
    if state is None:
        others = [p.name for p in out.iterdir() if p.name != ".talkface.lock"] if out.exists() else []
        if others:
            raise DemoError(f"--out {out} is not empty and holds no demo ({STATE_FILE} not found): give a "
                            "new or empty folder")
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "settings": settings, "steps": {},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "talkface_version": __version__}
    old = state.get("settings", {})
    diffs = [f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in settings.items() if old.get(k) != v]
    if diffs:
        raise DemoError(f"{out} holds a demo made with other settings ({'; '.join(diffs)}): use another "
                        f"--out, or delete {out} to start over")
    state.setdefault("steps", {})
    return state


# Running -----------------------------------------------------------------------------------------------


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


def _step_table(ctx: Context, steps: list[Step], current: int | None, marks: dict[str, str]) -> Table:
    mode = ctx.profile.name + (", GPU" if ctx.config.gpu else "")
    title = f"talkface demo ({mode}) -> {ctx.out}"
    if current is not None:
        title += f"   step {current + 1} of {len(steps)}"
    table = Table(title=escape(title), show_header=False, box=None, padding=(0, 1), title_justify="left")
    table.add_column(width=1)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_column(justify="right", no_wrap=True)
    recorded = ctx.state.get("steps", {})
    for i, step in enumerate(steps):
        mark = marks.get(step.key, "")
        rec = recorded.get(step.key) or {}
        if i == current:
            table.add_row("[bold yellow]>[/]", f"[bold]{escape(step.title)}[/]", "running", "")
        elif mark in ("done", "skipped"):
            note = rec.get("note", "")
            if mark == "skipped":
                note = ("already finished; " + note) if note else "already finished"
            table.add_row("[green]v[/]", escape(step.title), f"[dim]{escape(note)}[/]",
                          _fmt_seconds(rec.get("seconds", 0.0)) if mark == "done" else "")
        elif mark == "failed":
            table.add_row("[red]x[/]", escape(step.title), "[red]failed[/]", "")
        else:
            table.add_row("[dim].[/]", f"[dim]{escape(step.title)}[/]", "", "")
    return table


def _save_state(ctx: Context) -> None:
    ctx.state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic.write_json(ctx.out / STATE_FILE, ctx.state)


def _remove_outputs(ctx: Context, step: Step) -> None:
    out = ctx.out.resolve()
    for path in step.outputs(ctx):
        resolved = path.resolve()
        if out not in resolved.parents:  # never anything outside the demo's own folder
            continue
        if resolved.is_dir():
            shutil.rmtree(resolved)
        elif resolved.exists():
            resolved.unlink()


def _run_step(ctx: Context, step: Step) -> str:
    notes = []
    for args in step.command(ctx):
        ctx.console.print(f"[dim]$ talkface {escape(' '.join(args))}[/]", highlight=False, soft_wrap=True)
        code = invoke(ctx.app, args)
        if code != 0:
            raise StepFailed(f"step '{step.title}' failed: `talkface {' '.join(args)}` exited with status "
                             f"{code} (its message is above); fix it and run the demo again to continue",
                             exit_code=code)
    if step.after is not None:
        notes.append(step.after(ctx))
    return "; ".join(n for n in notes if n)


def run_demo(config: DemoConfig, app: Any, console: Console | None = None,
             out_console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) the demo with the commands of ``app`` (``talkface.cli.app``); return its summary.
    Raises :class:`DemoError` for bad input or a refused folder and :class:`StepFailed` when a step's
    command fails."""
    from talkface.utils.lock import FolderLocked, WriterLock

    console = console or Console(stderr=True)
    out_console = out_console or Console()
    out = Path(config.out)
    if config.gpu:
        check_gpu()
    if config.data is not None:
        protocol, held_out = check_given_dataset(config.data, config.protocol)
        data = config.data
    else:
        if config.protocol not in (None, demo_data.DEMO_PROTOCOL):
            raise DemoError(f"--protocol {config.protocol} needs --data: the built-in clips use the "
                            f"committed '{demo_data.DEMO_PROTOCOL}' split")
        try:
            demo_data.verify_demo_data()
        except demo_data.DemoDataError as exc:
            raise DemoError(str(exc)) from None
        protocol, held_out, data = demo_data.DEMO_PROTOCOL, demo_data.held_out_clips(), out / "data"
    settings = settings_of(config, protocol)
    state = check_out_folder(out, settings)
    lock = WriterLock(out, "demo")
    try:
        lock.acquire()
    except FolderLocked as exc:
        raise DemoError(str(exc)) from None
    try:
        state = check_out_folder(out, settings)  # again, now that no other demo can write it
        ctx = Context(config, out, data, protocol, held_out, console, state, app)
        if config.data is None and _prepared(ctx):
            ctx.held_out = _held_out(data, protocol)
        return _run_steps(ctx, out_console)
    finally:
        lock.release()


def _run_steps(ctx: Context, out_console: Console) -> dict[str, Any]:
    steps = build_steps(given_data=ctx.config.data is not None)
    marks: dict[str, str] = {}
    ran: set[str] = set()
    started = time.time()
    recorded: dict[str, Any] = ctx.state["steps"]
    _save_state(ctx)
    for i, step in enumerate(steps):
        stale = any(d in ran for d in step.deps)
        if not stale and step.key in recorded and step.complete(ctx):
            marks[step.key] = "skipped"
            continue
        ctx.console.print()
        ctx.console.print(_step_table(ctx, steps, i, marks))
        ctx.console.rule(f"[bold]{escape(step.title)}")
        recorded.pop(step.key, None)
        _save_state(ctx)
        if stale:
            _remove_outputs(ctx, step)
        t0 = time.time()
        try:
            note = _run_step(ctx, step)
        except StepFailed:
            marks[step.key] = "failed"
            ctx.console.print(_step_table(ctx, steps, None, marks))
            raise
        except (KeyboardInterrupt, DemoError):
            raise
        except Exception as exc:  # noqa: BLE001  (a bug in a command: keep the traceback, say one line)
            marks[step.key] = "failed"
            log = ctx.path("logs", f"{step.key.replace(':', '-')}.traceback.txt")
            atomic.write_text(log, traceback.format_exc())
            raise StepFailed(f"step '{step.title}' stopped on an unexpected error ({type(exc).__name__}: "
                             f"{exc}); the traceback is in {log}") from None
        if not step.complete(ctx):
            marks[step.key] = "failed"
            raise StepFailed(f"step '{step.title}' ended without its outputs being complete "
                             f"(see its messages above); run the demo again to retry it")
        recorded[step.key] = {"seconds": round(time.time() - t0, 1),
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "note": note or step.describe(ctx),
                              "commands": [" ".join(a) for a in step.command(ctx)]}
        marks[step.key] = "done"
        ran.add(step.key)
        _save_state(ctx)
    elapsed = time.time() - started
    ctx.console.print()
    ctx.console.print(_step_table(ctx, steps, None, marks))
    summary = make_summary(ctx, steps, marks, elapsed)
    atomic.write_text(ctx.out / SUMMARY_FILE, summary["text"])
    ctx.state["last_run"] = {"seconds": round(elapsed, 1), "ran": sorted(ran),
                             "skipped": sorted(k for k, m in marks.items() if m == "skipped"),
                             "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _save_state(ctx)
    out_console.print(escape(summary["text"]), highlight=False, soft_wrap=True)
    return summary


# Summary -----------------------------------------------------------------------------------------------


def split_description(ctx: Context) -> str:
    if ctx.config.data is not None:
        return (f"protocol '{ctx.protocol}' of {ctx.data}: trained on its train part, generated and scored "
                f"on its {len(ctx.held_out)} usable test clips")
    val = [c for c, p in demo_data.DEMO_SPLIT.items() if p == "val"]
    return (f"protocol 'demo' of the 12 built-in GRID s1 clips: held out (generated and scored) "
            f"{', '.join(ctx.held_out)}, the four clips with the highest seen-protocol hash; validation "
            f"{', '.join(val)}; the other seven train (s1_lgbf8n has 12 faceless frames and is not usable, "
            "so 6 train)")


def training_description(ctx: Context) -> str:
    p = ctx.profile
    text = f"train pipeline --steps {p.steps_arg()} --budget {p.train_budget}"
    try:
        text += f" ({_train_note(ctx)})"
    except Exception:  # noqa: BLE001
        pass
    return text


def shipped_description(given_data: bool) -> str:
    from talkface.generation.pretrained import pretrained_index

    index = pretrained_index() or {}
    folder = shipped_model()
    return (f"the model shipped with talkface ({folder}), trained on "
            f"{index.get('trained_on', 'the fixture speakers')} ({steps_reached(folder)}; "
            f"seed {index.get('seed')}; "
            f"`{index.get('command', '?')}`)"
            + ("" if given_data else ": it never trained on the built-in clips"))


def make_summary(ctx: Context, steps: list[Step], marks: dict[str, str], elapsed: float) -> dict[str, Any]:
    table = (ctx.board / "leaderboard.md").read_text().strip()
    n_ran = sum(1 for m in marks.values() if m == "done")
    n_skipped = sum(1 for m in marks.values() if m == "skipped")
    total = sum((ctx.state["steps"].get(s.key) or {}).get("seconds", 0.0) for s in steps)
    page = ctx.study / "site" / "index.html"
    lines = [
        f"# talkface demo ({ctx.profile.name})",
        "",
        f"Finished: {n_ran} {'step' if n_ran == 1 else 'steps'} ran in {_fmt_seconds(elapsed)}, "
        f"{n_skipped} {'was' if n_skipped == 1 else 'were'} already done (all {len(steps)} steps took "
        f"{_fmt_seconds(total)} in all). talkface {__version__}, {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "Open first:",
        f"  1. {ctx.board / 'leaderboard.html'}  the comparison table (click a header to sort)",
        f"  2. {ctx.compare_video}  real | ours | static-frame on held-out clip {ctx.compare_clip}, "
        "with sound",
        f"  3. {page}?p=1  the blinded A/B study page (its key: {ctx.study / 'key.json'})",
        "",
        f"Split: {split_description(ctx)}.",
        f"Training: {training_description(ctx)}.",
        *([f"Shipped: {shipped_description(ctx.config.data is not None)}."]
          if any(s.key == f"videos:{SHIPPED}" for s in steps) else []),
        "",
        "The table (also leaderboard.csv, leaderboard.tex; plots: "
        + ", ".join(name for name, _ in PLOTS) + f" in {ctx.board}):",
        "",
        table,
        "",
        f"Videos: {ctx.path('videos')}/<method>/<clip>.mp4; results: {ctx.results}; "
        f"checkpoints: {ctx.runs}; what each step ran: {ctx.out / STATE_FILE}.",
    ]
    if ctx.profile.name == "full":
        lines.append("A demo budget trains far less than the recipe (docs/models.md: `talkface train "
                     "pipeline --data D --out runs/`, about 35 CPU-minutes); expect the trained rows near "
                     "the baselines.")
    text = "\n".join(lines) + "\n"
    return {"text": text, "table": table, "elapsed_s": elapsed, "held_out": ctx.held_out,
            "open_first": [str(ctx.board / "leaderboard.html"), str(ctx.compare_video), str(page)]}
