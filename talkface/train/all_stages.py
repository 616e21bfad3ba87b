"""``talkface train pipeline``: the one command that trains every stage in sequence (the training schedule).

    talkface train pipeline --data D --out runs/                       # the documented step counts
    talkface train pipeline --data D --out runs/ --budget 45m          # a wall-time budget instead
    talkface train pipeline --data D --out runs/ --steps lm=3000,tex=2000

Stages, folders and the documented step counts (:data:`SCHEDULE`): landmarks -> ``runs/lm`` (1500
steps), blinks -> ``runs/blink`` (400 steps), texture -> ``runs/tex`` (1000 steps), each with its own
``train <stage>`` defaults otherwise (batch size, learning rate, validation interval). The step counts
are the ones measured to beat the still-frame baseline on mouth LMD on the GRID s1 fixtures (about 35
CPU-minutes on 2 cores). ``--budget`` gives each stage a share of the wall time instead (landmarks 25%,
blinks 10%, texture 65%, from those stages' measured CPU throughput: about 3, 3 and 1 steps/s); a
stage stops, validates and saves when its share is spent (the steps of a stage not named in ``--steps``
then cap at 20x the schedule's). ``--steps`` with ``--budget``: whichever ends first.

The budget is wall time on the clock, calibration included: it counts from the command's start (less the
training time earlier runs of the same command spent), and each stage, when it starts, gets its share of
what is left after the calibration's reserve, as a deadline by which it must have validated and saved
(the loop stops when one more step and its final validation and save would not fit, by its own
measurements), so the time setup took and the stages before it overran come off the ones after.

Last, the blink amplitude is calibrated through the trained texture stage
(:mod:`talkface.train.blink_calibration`: blink rate in generated frames against the real crops, on 24
training clips, about 2 minutes; ``--calibration-clips 0`` skips it) into ``runs/blink/calibration.json``,
which ``generate`` applies while the blink and texture weights it was measured with are unchanged. With
``--budget``, 7.5 s a clip (at most half the budget) is reserved before training, and the calibration
times its clips as they render and renders only as many as the time then left allows (none, with a
note, when not one fits). A calibration that found no blinks is recorded but not applied.

Resume: rerun the same command. A stage whose ``checkpoint.json`` says it reached its steps (or spent
its time share) is skipped; a stage stopped part-way continues exactly (``--resume``), including one
stopped by Ctrl-C (which saves an exact-resume checkpoint and exits 130). One progress
view shows the schedule and the running stage; the end prints each stage's validation against its
baseline (mean face, real blinks, copying the identity frame), for the file ``generate`` loads.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkface.train import settings as to


@dataclass(frozen=True)
class ScheduledStage:
    """One stage of the schedule: which registered stage, its folder under OUT, steps, time share."""

    stage: str
    folder: str
    steps: int
    time_share: float
    rows: tuple[tuple[str, str, str, str], ...]  # summary rows: (label, ours, baseline, baseline name)
    #: one validation costs about as much as this many training steps (measured on 2 cores, the stage's
    #: defaults): what a budgeted stage keeps for its final validation before it has timed one
    validation_steps: float = 0.0


SCHEDULE: tuple[ScheduledStage, ...] = (
    ScheduledStage("landmarks", "lm", 1500, 0.25, (
        ("mouth point error, px", "point_error_mouth", "baseline_point_error_mouth", "mean face"),
        ("lmd_mouth:centroid-mean, px", "lmd_mouth_centroid_mean", "baseline_lmd_mouth_centroid_mean",
         "mean face"),
    ), validation_steps=0.5),
    ScheduledStage("blinks", "blink", 400, 0.10, (
        ("blinks per minute", "gen_blinks_per_min", "real_blinks_per_min", "real clips"),
        ("blink duration, frames", "gen_mean_duration_frames", "real_mean_duration_frames", "real clips"),
    ), validation_steps=1.0),
    ScheduledStage("texture", "tex", 1000, 0.65, (
        ("L1 to the real frame", "l1", "l1_identity_copy", "identity frame copied"),
        ("SSIM to the real frame", "ssim", "ssim_identity_copy", "identity frame copied"),
        # a stage that edits the warped identity (--base warp) is also compared with the warp alone
        ("L1 to the real frame (vs the warp)", "l1", "l1_warp_copy", "warped identity"),
        ("SSIM to the real frame (vs the warp)", "ssim", "ssim_warp_copy", "warped identity"),
    ), validation_steps=9.0),  # 256 pairs, L1 and SSIM: 43 s against 4-5 s a step
)
ALIASES = {"lm": "landmarks", "landmarks": "landmarks", "blink": "blinks", "blinks": "blinks",
           "tex": "texture", "texture": "texture"}
BUDGET_STEP_FACTOR = 20  # with --budget alone, steps cap at 20x the schedule's (time decides)


def parse_budget(text: str) -> float:
    """``"45m"``, ``"1h30m"``, ``"90s"``, ``"2h"`` or a bare number of minutes -> seconds."""
    text = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * 60.0
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"--budget {text!r}: expected a duration such as 45m, 1h30m, 90s or 2h")
    seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("--budget must be longer than zero")
    return seconds


def parse_steps(text: str) -> dict[str, int]:
    """``"lm=1500,blink=400,tex=1000"`` (any subset; lm|landmarks, blink|blinks, tex|texture)."""
    out: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        stage = ALIASES.get(name.strip())
        if not sep or stage is None or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--steps {text!r}: expected STAGE=N pairs such as lm=1500,blink=400,tex=1000 "
                             "(stages lm, blink, tex; N >= 1)")
        out[stage] = int(value)
    return out


@dataclass
class Plan:
    """What the schedule does with one stage this time: train fresh, resume, or skip (finished)."""

    scheduled: ScheduledStage
    out_dir: Path
    max_steps: int
    max_seconds: float | None
    action: str  # "train" | "resume" | "skip"
    done_step: int = 0
    spent_s: float = 0.0  # training time earlier runs of this stage recorded


#: Seconds of ``--budget`` kept per calibration clip for the blink calibration after training, before
#: any clip has been timed (measured on 2 cores: 129 s for 24 clips, 5.4 s a clip; under load up to
#: 29 s). The calibration then times its renders and renders only what the time left allows.
CALIBRATION_S_PER_CLIP = 7.5


def calibration_reserve_s(calibration_clips: int | None) -> float:
    from talkface.train.blink_calibration import N_CLIPS

    clips = N_CLIPS if calibration_clips is None else calibration_clips
    return CALIBRATION_S_PER_CLIP * clips


def calibration_clip_count(data: Path, protocol: str | None, calibration_clips: int | None) -> int:
    """How many clips the calibration will render: the asked-for count (``N_CLIPS`` when None) but no
    more than the protocol's usable training clips (0: skipped)."""
    from talkface.store.dataset import Dataset
    from talkface.train.blink_calibration import N_CLIPS

    asked = N_CLIPS if calibration_clips is None else calibration_clips
    if asked == 0:
        return 0
    try:
        return min(asked, len(Dataset.open(data).parts(protocol).train))
    except (OSError, ValueError):  # the stages report an unreadable dataset in their own words
        return asked


def stage_deadline(plans: list[Plan], i: int, now: float, deadline: float, calibration_clips: int) -> float:
    """When stage ``i``, starting at ``now``, must have saved: its time share, among the stages still to
    train, of what is left before ``deadline`` after the calibration's reserve (at most half of it)."""
    left = max(deadline - now, 0.0)
    reserve = min(calibration_reserve_s(calibration_clips), 0.5 * left)
    shares = sum(p.scheduled.time_share for p in plans[i:] if p.action != "skip")
    return now + (left - reserve) * plans[i].scheduled.time_share / shares


def plan(out: Path, steps: dict[str, int], budget_s: float | None, calibration_clips: int | None = 0
         ) -> list[Plan]:
    """Each stage's run folder, limits and action, from the ``checkpoint.json`` files already there;
    a ``budget_s`` first gives up the calibration's reserve (at most half of it)."""
    from talkface.store.checkpoints import CheckpointError, read_meta

    if budget_s is not None:
        budget_s = max(budget_s - calibration_reserve_s(calibration_clips), 0.5 * budget_s)
    plans = []
    for r in SCHEDULE:
        max_steps = steps.get(r.stage, r.steps if budget_s is None else r.steps * BUDGET_STEP_FACTOR)
        max_seconds = budget_s * r.time_share if budget_s is not None else None
        run_dir = out / r.folder
        meta = read_meta(run_dir / "checkpoints")
        action, done = "train", 0
        if meta is not None:
            if meta.stage != r.stage:
                raise CheckpointError(f"{run_dir} holds a '{meta.stage}' run, not '{r.stage}': move it away "
                                      "or choose another --out")
            spent = float(meta.budget.get("train_seconds") or 0.0)
            finished = meta.step >= max_steps or (max_seconds is not None and spent >= max_seconds)
            if meta.budget.get("pending"):  # stopped by Ctrl-C before its step's validation or save
                finished = False
            action, done = ("skip" if finished else "resume"), meta.step
        elif (run_dir / "checkpoints" / "last.pt").exists():
            action = "resume"  # an old run without a sidecar
        plans.append(Plan(r, run_dir, max_steps, max_seconds, action, done,
                          float(meta.budget.get("train_seconds") or 0.0) if meta is not None else 0.0))
    return plans


def last_validation(out_dir: Path, step: int | None = None) -> dict[str, float]:
    """The validation line of ``OUT/metrics.jsonl`` at ``step`` (the last one when None)."""
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if step is not None:
        lines = [line for line in lines if line.get("step") == step] or lines
    return lines[-1] if lines else {}


def summary_rows(out: Path) -> list[dict[str, Any]]:
    """Per stage and row: our validation number and its baseline, for the file generation loads
    (``best.pt``'s validation when the stage selected one, else the last validation)."""
    from talkface.store.checkpoints import read_meta

    rows = []
    for r in SCHEDULE:
        run_dir = out / r.folder
        meta = read_meta(run_dir / "checkpoints")
        step = meta.best.step if meta is not None and meta.best is not None else None
        val = last_validation(run_dir, step)
        for label, ours, base, base_name in r.rows:
            if val and base not in val:  # a baseline this run does not report (the warp, for --base identity)
                continue
            rows.append({"stage": r.stage, "folder": str(run_dir), "step": val.get("step"),
                         "file": meta.weights_name() if meta is not None else None,
                         "train_seconds": (meta.budget.get("train_seconds") if meta is not None else None),
                         "label": label, "ours": val.get(ours), "baseline": val.get(base),
                         "baseline_name": base_name, "val_is_train": bool(val.get("val_is_train"))})
        if r.stage == "blinks":
            rows.extend(calibration_rows(run_dir))
    return rows


def calibration_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The blink calibration's summary row (none when the run has no calibration.json)."""
    from talkface.store.blink_calibration import applicable, calibration_path, chosen_rate

    path = calibration_path(run_dir)
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    label = (f"blinks per minute in generated frames, calibrated x{record['amplitude']:g}"
             if applicable(record) else f"blink calibration not applied: {record.get('why')}")
    return [{"stage": "blinks", "folder": str(run_dir), "step": None, "file": path.name,
             "train_seconds": None, "label": label, "ours": chosen_rate(record),
             "baseline": record["real_blinks_per_min"], "baseline_name": "real crops", "val_is_train": False}]


def run_pipeline(data: Path, out: Path, protocol: str | None, steps: dict[str, int], budget_s: float | None,
                 common: dict[str, Any], calibration_clips: int | None = None, started: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 stage_options: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Train the schedule's stages in sequence into ``out`` under one progress view, then calibrate the
    blink amplitude on ``calibration_clips`` training clips (default ``calibrate.N_CLIPS``; 0: not);
    return the summary. ``stage_options``: a stage's own options by stage name (e.g. ``{"landmarks":
    {"feature_norm": "utterance"}}``), the rest at their defaults. ``budget_s`` counts on ``clock`` from
    ``started`` (default: now), less the training time earlier runs of the same command recorded."""
    from talkface.utils.progress import console, make_progress

    started = clock() if started is None else started
    n_calibration = calibration_clip_count(data, protocol, calibration_clips)
    plans = plan(out, steps, budget_s, n_calibration)
    deadline = None if budget_s is None else started + budget_s - sum(p.spent_s for p in plans)
    progress = make_progress()
    overall = progress.add_task("pipeline", total=len(plans), info="")
    with progress:
        for i, p in enumerate(plans):
            spec = to.STAGES.get(p.scheduled.stage)
            progress.update(overall, completed=i, info=f"{p.scheduled.stage} -> {p.out_dir} ({p.action})")
            if p.action == "skip":
                console.print(f"{p.scheduled.stage}: finished at step {p.done_step} in {p.out_dir}; skipped")
                continue
            values = {name: spec.default(name) for name, _, _ in to.SHARED_OPTIONS}
            values.update(common, out=p.out_dir, max_steps=p.max_steps, resume=p.action == "resume")
            settings = to.settings_from_cli(**values)
            settings.max_seconds = p.max_seconds
            own = {o.name: o.default for o in spec.options}
            given = (stage_options or {}).get(spec.name, {})
            if unknown := set(given) - set(own):
                raise ValueError(f"{spec.name} has no option {', '.join(sorted(unknown))}")
            stage = spec.build(data, protocol, **{**own, **given})
            from talkface.train.loop import run_training

            until = None if deadline is None else stage_deadline(plans, i, clock(), deadline, n_calibration)
            result = run_training(stage, settings, progress=progress, deadline=until, clock=clock,
                                  validation_steps=p.scheduled.validation_steps)
            console.print(f"{p.scheduled.stage}: step {result.step} ({result.stopped_by}), "
                          f"{result.samples_per_s:.1f} samples/s -> {p.out_dir}", markup=False)
        progress.update(overall, completed=len(plans), info="done")
    if calibration_clips != 0:
        calibrate(data, out, protocol, int(common.get("seed") or 0), n_calibration or calibration_clips,
                  deadline=deadline, clock=clock)
    return summary_rows(out)


def _weights_sha256(out: Path, stage: str) -> str | None:
    """The SHA-256 checkpoint.json records for the file ``generate`` loads of ``stage`` (None: unknown)."""
    from talkface.store.checkpoints import CheckpointError, find_stage

    try:
        meta = find_stage(out, stage).meta
    except CheckpointError:
        return None
    entry = meta.files.get(meta.weights_name()) if meta is not None else None
    return entry.sha256 if entry is not None else None


def calibrate(data: Path, out: Path, protocol: str | None, seed: int, n_clips: int | None = None,
              deadline: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
    """The blink amplitude through the texture stage, unless a calibration of these very weights exists
    (applicable or not); with ``deadline``, only the clips that fit before it (none: a note)."""
    from talkface.store import blink_calibration as record_file
    from talkface.train import blink_calibration as calibration
    from talkface.utils.progress import console

    blink_dir = out / next(r.folder for r in SCHEDULE if r.stage == "blinks")
    try:
        earlier = record_file.read_record(blink_dir)
    except record_file.CalibrationUnreadable:
        earlier = None  # rewritten below
    shas = _weights_sha256(out, "blinks"), _weights_sha256(out, "texture")
    if earlier is not None and None not in shas and record_file.measured_with(earlier, *shas):
        if record_file.applicable(earlier):
            console.print(f"blinks: calibrated amplitude x{earlier['amplitude']:g} "
                          f"({record_file.calibration_path(blink_dir)}); kept", markup=False)
        else:
            console.print(f"blinks: the calibration of these weights found no blinks ({earlier.get('why')}); "
                          "kept, not applied", markup=False)
        return
    if deadline is not None and deadline - clock() < CALIBRATION_S_PER_CLIP:
        console.print(f"blinks: blink calibration skipped: {max(deadline - clock(), 0.0):.0f} s of --budget "
                      f"left, and a clip takes about {CALIBRATION_S_PER_CLIP:g} s; generation keeps the "
                      "blink stage's own amplitude", markup=False)
        return
    from talkface.generation.generator import load_generator

    gen = load_generator(out, device="auto", needed_by="blink calibration", data=data)
    per_render = CALIBRATION_S_PER_CLIP / (len(calibration.AMPLITUDES) + 1)
    record = calibration.calibrate_blink_amplitude(data, out, protocol, seed=seed,
                                                   n_clips=n_clips or calibration.N_CLIPS, gen=gen,
                                                   deadline=deadline, clock=clock, first_render_s=per_render)
    if record is None:
        console.print("blinks: blink calibration skipped: not one clip fitted in the time left in --budget; "
                      "generation keeps the blink stage's own amplitude", markup=False)
        return
    n = len(record["clips"])
    clips = f"{n} training clips"
    if record["stopped_by"] == "time":
        clips = (f"{n} of {record['clips_asked']} training clips, as many as the time left in --budget "
                 f"allowed at {record['seconds'] / max(n, 1):.1f} s a clip")
    if not record_file.applicable(record):
        console.print(f"blinks: blink calibration not applied: {record['why']} ({clips}); generation keeps "
                      "the blink stage's own amplitude", markup=False)
        return
    console.print(f"blinks: amplitude x{record['amplitude']:g} calibrated through the texture stage: "
                  f"{record_file.chosen_rate(record):.1f} blinks/min in generated frames, "
                  f"{record['real_blinks_per_min']:.1f} in the real crops ({clips})", markup=False)


def print_summary(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from talkface.utils.progress import console

    table = Table(title="validation of the trained stages (the files `generate` loads)")
    for col in ("stage", "file @ step", "train time", "number", "ours", "baseline"):
        table.add_column(col)
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    for row in rows:
        secs, step = row["train_seconds"], row["step"]
        ours = fmt(row["ours"]) + (" (on the training clip)" if row.get("val_is_train") else "")
        table.add_row(row["stage"], f"{row['file'] or '-'} @ {'-' if step is None else step}",
                      "-" if secs is None else f"{secs / 60:.1f} min", row["label"], ours,
                      f"{fmt(row['baseline'])} ({row['baseline_name']})")
    console.print(table)
    if any(row.get("val_is_train") for row in rows):
        console.print("note: the dataset has a single usable clip, so validation ran on the training clip: "
                      "those numbers measure fitting, not generalisation", markup=False)
