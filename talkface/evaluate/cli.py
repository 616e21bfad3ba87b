"""``talkface evaluate`` and ``talkface metrics list``.

Conventions (docs/architecture.md): ``--data`` is the prepared dataset whose crops are the ground
truth (the old ``--reference``, which only ever meant a prepared dataset, still works with a
deprecation note); ``--protocol`` a split protocol (default: the dataset's own); ``--part`` one part of
it (train | val | test; default: every usable clip).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from talkface.core.executors import RAY_ADDRESS_HELP, executor_help
from talkface.utils.cli_kit import fail, renamed_option

metrics_app = typer.Typer(
    help="The metrics talkface computes: names, variants, direction, inputs.", no_args_is_help=True
)

def evaluate(
    generated: Annotated[Path, typer.Option(
        "--generated",
        help="Folder of generated videos <clip_id>.mp4 (or <clip_id>/ folders of PNG frames).")],
    method: Annotated[str, typer.Option(
        "--method", help="Name of the method, shown as given in every table; rerunning replaces its rows "
        "only. Its run record is OUT/runs/<name>.json when the name is plain (letters, digits, . _ + -), "
        "else a slug of it and a hash: nothing is written outside --out.")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="Prepared dataset (`talkface prepare ...`): its usable clips' crops are the ground "
        "truth. Required.")] = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", hidden=True, help="Deprecated spelling of --data.")] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="Results folder: results.parquet, summary.json, runs/<method>.json.")
    ] = Path("results"),
    protocol: Annotated[str | None, typer.Option(
        "--protocol", help="Split protocol of the dataset (seen, speaker-independent, ...); default: its "
        "own. Recorded with the results.")] = None,
    part: Annotated[str | None, typer.Option(
        "--part", help="Only this part's clips are references: train | val | test. Default: every usable "
        "clip (the part is still recorded when all scored clips are in one).")] = None,
    metrics: Annotated[str, typer.Option(
        "--metrics", help="Comma-separated metric names, optionally name:variant (e.g. psnr,"
        "ssim:uniform7-gray-range255,lmd_mouth). Default: every metric whose inputs and weights are "
        "available (see `talkface metrics list`).")] = "",
    trim: Annotated[bool, typer.Option(
        "--trim", help="Score a clip more than one frame shorter or longer than its reference on the "
        "frames both have (default: such a clip is a recorded failure). The summary says how many clips "
        "were trimmed and by how much.")] = False,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Processes scoring clips in parallel (with --executor ray and no "
        "--ray-address: the CPUs of the Ray started on this machine).")] = 1,
    executor: Annotated[str, typer.Option(
        "--executor", help=executor_help("--generated, --data and --out"))] = "process",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help=RAY_ADDRESS_HELP)] = None,
    landmark_cache: Annotated[bool, typer.Option(
        "--landmark-cache/--no-landmark-cache", help="Reuse the reference clips' landmarks cached in "
        "OUT/cache/reference_landmarks by an earlier run with the same detector (default), and cache "
        "those detected now.")] = True,
    arcface_model: Annotated[Path | None, typer.Option(
        "--arcface-model", help="insightface-layout ArcFace ONNX file (enables identity_arcface).")] = None,
    lpips_weights: Annotated[Path | None, typer.Option(
        "--lpips-weights", help="LPIPS v0.1 linear-head weights (with --lpips-backbone, enables lpips).")
    ] = None,
    lpips_backbone: Annotated[Path | None, typer.Option(
        "--lpips-backbone", help="torchvision AlexNet/VGG16 backbone state_dict for LPIPS.")] = None,
    syncnet_model: Annotated[Path | None, typer.Option(
        "--syncnet-model", help="SyncNet weights syncnet_v2.model (enables lse_c and lse_d).")] = None,
    detector: Annotated[str, typer.Option(
        "--detector", help="dlib face detector for landmarks on both sides: hog (fast) or cnn (robust).")
    ] = "hog",
) -> None:
    """Score generated videos against a prepared dataset with named, calibrated metrics.

    Pairs clips by id (unmatched clips are listed). A generated clip more than one frame shorter or
    longer than its reference is a recorded failure (--trim scores the overlap instead); generated
    frames are resized to the reference crop size (flagged); landmarks come from the same detector on
    both sides. Writes one row per (method, clip, metric, variant) to OUT/results.parquet, the run
    record with its protocol to OUT/runs/METHOD.json, and OUT/summary.json (mean, std, 95% bootstrap
    interval, full metric definition), then prints the summary table.

    Reference landmarks are cached in OUT/cache/reference_landmarks, so a second method scored against
    the same clips with the same detector does not detect them again.

    Example:
      talkface evaluate --generated out/ours --data data/grid --part test --method ours --out results/
      talkface evaluate ... --executor ray --ray-address auto    # clips as Ray tasks on a cluster
    """
    from talkface.core.executors import EXECUTORS
    from talkface.evaluate.runner import EvaluateConfig, run_evaluate
    from talkface.store.results import ResultsStore

    data = _data_path(data, reference)
    try:  # before any work: the names rule, the run record file's owner, a damaged results file
        ResultsStore(out).check_method_name(method)
        ResultsStore(out).read()
    except ValueError as exc:
        _fail(exc)
    if executor not in EXECUTORS:
        _fail(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        _fail("--ray-address needs --executor ray")
    models = {"arcface_model": arcface_model, "lpips_weights": lpips_weights,
              "lpips_backbone": lpips_backbone, "syncnet_model": syncnet_model}  # runner.MODEL_OPTIONS
    cfg = EvaluateConfig(
        generated=generated,
        data=data,
        method=method,
        out=out,
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] or None,
        metric_options={k: None if v is None else str(v) for k, v in models.items()},
        workers=workers,
        landmark_options={"detector": detector},
        protocol=protocol,
        part=part,
        trim=trim,
        executor=executor,
        ray_address=ray_address,
        landmark_cache=landmark_cache,
    )
    try:
        record = run_evaluate(cfg, echo=lambda line: typer.echo(line, err=True))
    except _errors() as exc:
        _fail(exc)
    typer.echo(
        f"{method}: {record['pairing']['n_matched']} clips, {record['frames_scored']} frames in "
        f"{record['elapsed_s']:.1f} s -> {out / 'results.parquet'}, {out / 'summary.json'}"
    )
    try:
        print_summary(out, method)
    except ValueError as exc:  # ResultsError: another method's damaged run record
        _fail(exc)


def _data_path(data: Path | None, reference: Path | None) -> Path:
    try:
        data = renamed_option("--data", data, "--reference", reference, "the prepared dataset")
    except typer.BadParameter as exc:
        _fail(exc.message)
    if data is None:
        _fail("missing option --data: the prepared dataset whose crops are the ground truth")
    return data


def _errors() -> tuple[type[BaseException], ...]:
    """What evaluate reports as one line and exit 2 (all user-facing, none a bug)."""
    from talkface.core.executors import ExecutorError
    from talkface.evaluate.metrics.base import MetricUnavailable
    from talkface.utils.lock import FolderLocked

    # ValueError covers DatasetError, EvaluateError, ResultsError; KeyError an unknown metric;
    # ExecutorError Ray missing or its cluster unreachable.
    return (FileNotFoundError, KeyError, ValueError, MetricUnavailable, FolderLocked, ExecutorError)


def _fail(exc: BaseException | str) -> NoReturn:
    """One ``error:`` line (white space folded: messages may name paths over several lines), exit 2."""
    fail(exc, one_line=True)


# -- the summary table ----------------------------------------------------------------------------

#: Direction of a metric in the table: higher, lower, or closest to the real data's value is better.
ARROWS = {True: "↑", False: "↓", None: "≈"}
CAPTION = ("mean, [95% bootstrap interval over clips]; ↑ higher is better, ↓ lower is better, "
           "≈ real: closest to the real data")
#: Widest the metric column grows before its names fold (they are text; numbers never fold).
METRIC_MAX_WIDTH = 24
METRIC_MIN_WIDTH = 10
#: Widest a method's name makes its column (longer names fold in the header).
NAME_MAX_WIDTH = 20


def summary_table(out: Path, method: str, width: int | None = None) -> tuple[list[Any], list[str]]:
    """Rich Tables of the methods in ``out`` measured under ``method``'s protocol (rows: metrics,
    columns: methods; each cell the mean and its 95% interval), and the lines to print under them.

    Fitted to ``width`` (a terminal's columns; None: one table, one line per cell): one line per cell
    when one table fits, else the interval under the mean and the methods split over as many tables
    as needed, each repeating the metric column, so no number is ever folded or cut.
    """
    from talkface.store.results import ResultsStore

    store = ResultsStore.open(out)
    mine = store.protocol(method)
    methods, other = [method], []
    for m in store.methods():
        if m == method:
            continue
        theirs = store.protocol(m)
        same = mine is not None and theirs is not None and not mine.differences(theirs)
        (methods if same else other).append(m)
    summaries = {m: store.metric_summaries(m) for m in methods}
    keys = list(summaries[method])
    keys += sorted({k for s in summaries.values() for k in s} - set(keys))
    title = f"{method}" if len(methods) == 1 else f"{len(methods)} methods"
    if mine is not None:
        part = f", part {mine.part}" if mine.part else ""
        title += f" on {mine.dataset} ({mine.protocol}{part}, {mine.crop_size} px)"
    firsts = {key: next(ms[key] for ms in summaries.values() if key in ms) for key in keys}
    real = None
    if any(s.reference_mean is not None for s in firsts.values()):
        real = {key: "" if s.reference_mean is None else _num(s.reference_mean) for key, s in firsts.items()}
    rows = _Rows(keys, firsts, real, method)
    groups: list[list[str]] = [methods]
    # the widest layout that fits: one line per cell; the interval under the mean; long metric names
    # broken after their ':'; then as many tables as the methods need
    for sep, metric_width in ((" ", None), ("\n", None), ("\n", METRIC_MAX_WIDTH)):
        rows.cells = {m: {key: _cell(summaries[m][key], sep) if key in summaries[m] else "" for key in keys}
                      for m in methods}
        rows.metric_width = metric_width
        if width is None:
            break
        groups = _column_groups(methods, rows, width)
        if len(groups) == 1:
            break
    tables = []
    for i, group in enumerate(groups):
        suffix = f" ({i + 1}/{len(groups)})" if len(groups) > 1 else ""
        tables.append(rows.table(group, title + suffix, CAPTION if i == len(groups) - 1 else None))
    notes = [_counts_line(m, store) for m in methods]
    if other:
        notes.append(f"not shown (another protocol or none recorded): {', '.join(other)}")
    return tables, notes


class _Rows:
    """The rows of the summary table: metric, direction, the real data's value, one cell per method."""

    def __init__(self, keys: list[str], firsts: dict[str, Any], real: dict[str, str] | None, bold: str):
        self.keys, self.firsts, self.real, self.bold = keys, firsts, real, bold
        self.cells: dict[str, dict[str, str]] = {}
        self.metric_width: int | None = None  # None: the longest name's; else names break after ':'

    def metric(self, key: str) -> str:
        if self.metric_width is None or len(key) <= self.metric_width:
            return key
        name, sep, variant = key.partition(":")
        return f"{name}{sep}\n{variant}" if sep else key

    def table(self, methods: list[str], title: str | None = None, caption: str | None = None) -> Any:
        from rich import box
        from rich.table import Table

        stacked = any("\n" in c for cells in self.cells.values() for c in cells.values())
        table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      leading=1 if stacked else 0)  # a blank line between rows of several lines
        table.add_column("metric", overflow="fold", min_width=METRIC_MIN_WIDTH, max_width=self.metric_width)
        table.add_column("", justify="center", no_wrap=True)
        if self.real is not None:
            table.add_column("real", justify="right", no_wrap=True)
        for m in methods:
            longest = max((len(line) for c in self.cells[m].values() for line in c.splitlines()), default=1)
            table.add_column(m, justify="right", overflow="fold", min_width=longest,
                             max_width=max(longest, min(len(m), NAME_MAX_WIDTH)),  # long names fold
                             style="bold" if m == self.bold else None)
        for key in self.keys:
            row = [self.metric(key), ARROWS.get(self.firsts[key].higher_is_better, "")]
            if self.real is not None:
                row.append(self.real[key])
            row += [self.cells[m][key] for m in methods]
            table.add_row(*row)
        return table


def _column_groups(methods: list[str], rows: _Rows, width: int) -> list[list[str]]:
    """The methods in order, split into groups whose table (as rich measures it) fits ``width``
    columns; at least one method each."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=10_000)

    def fits(group: list[str]) -> bool:
        return Measurement.get(console, console.options, rows.table(group)).maximum <= width

    groups: list[list[str]] = [[]]
    for m in methods:
        if groups[-1] and not fits([*groups[-1], m]):
            groups.append([])
        groups[-1].append(m)
    return groups


def print_summary(out: Path, method: str, console: Any = None) -> None:
    """The summary tables of ``out`` for ``method``, fitted to the console's width."""
    from rich.console import Console

    console = console or Console()
    tables, notes = summary_table(out, method, width=console.width)
    for table in tables:
        console.print(table)
    for line in notes:
        console.print(line, highlight=False)


def _cell(s: Any, sep: str = " ") -> str:
    """The mean, its interval and the failed clips, joined by ``sep`` (a new line keeps a column
    narrow)."""
    lo, hi = s.ci95
    lines = [_num(s.mean)]
    if math.isfinite(lo) and math.isfinite(hi):
        lines.append(f"[{_num(lo)}, {_num(hi)}]")
    if s.n_failed:
        lines.append(f"({s.n_failed} failed)")
    return sep.join(lines)


def _num(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"


def _counts_line(method: str, store: Any) -> str:
    """``ours: 10 clips, 1 failed, 2 trimmed (1 to 35 frames, 36 in total)``."""
    entry = store.summary()["methods"][method]
    run = entry["run"]
    n = run.get("pairing", {}).get("n_matched")
    failed = len(run.get("unreadable_clips", [])) + len(run.get("frame_count_failures", {}))
    parts = [f"{method}: {n} clips" if n is not None else method]
    if failed:
        parts.append(f"{failed} failed as a whole (unreadable or frame count)")
    trimmed = entry.get("trimmed") or {}
    if trimmed.get("n_clips"):
        parts.append(
            f"{trimmed['n_clips']} trimmed to their reference's length (at most "
            f"{trimmed['frames_dropped_max']} frames, {trimmed['frames_dropped_total']} in total)"
        )
    return ", ".join(parts)


# -- metrics list ---------------------------------------------------------------------------------


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
