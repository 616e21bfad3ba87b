"""Issue 10's measurement: does the trained pipeline beat a still frame on held-out clips?

    python benchmarks/bench_pipeline_quality.py --budget 45m            # the issue's run (2-core CPU)
    python benchmarks/bench_pipeline_quality.py --quick                 # a few minutes: proves the path

1. Prepare the GRID fixtures' s1 clips with the committed ``seen`` protocol (``talkface prepare grid
   FIXTURES --speakers s1 --protocol seen``; ``--quick``: the first 30 clips only), unless ``--data``
   names a prepared store.
2. Train with the one-command recipe (``talkface.train.all_stages.run_pipeline``, the code of ``talkface
   train pipeline``) on the protocol's ``train`` clips within ``--budget`` (``--quick``: a handful of
   steps per stage, ``--steps`` to choose). ``val`` clips only validate (no gradient, no selection:
   the blink stage selects against its training data), so ``val`` and ``test`` are both held out.
3. Generate the trained pipeline and the five built-in baselines (``ground-truth``, ``static-frame``,
   ``mean-face``, ``oracle-landmarks``, ``no-blinks``) on the held-out parts with
   ``talkface.generation.part.generate_part``, the code of ``generate --data`` / ``baseline``.
4. ``talkface evaluate`` each method (PSNR, SSIM, mouth and face LMD, blink rate and duration; dlib
   landmarks on generated and reference frames alike).
5. Paired comparisons over clips (the same clips for both methods; bootstrap of the mean difference,
   2000 resamples, 95% interval: ``talkface.leaderboard.stats.paired_bootstrap``) against the issue's
   targets, written to ``--out``/pipeline_quality.json and .md with machine, load, date, budget, seed,
   steps reached and split.

Nothing here is a unit test: the budgeted run takes about an hour on 2 cores (training 45 minutes,
generation and evaluation the rest).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from talkface.utils.fixtures import fixtures_dir

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("pipeline", "ground-truth", "static-frame", "mean-face", "oracle-landmarks", "no-blinks")
METRICS = ("psnr", "ssim", "lmd_mouth", "lmd_face", "blink_rate", "blink_duration")
QUICK_STEPS = "lm=60,blink=40,tex=40"
QUICK_CLIPS = 30


def machine() -> dict[str, Any]:
    import torch
    from run_all import cpu_model, memory_gib

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "memory": f"{memory_gib():.0f} GiB", "gpu": gpu,
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_stamp(started: dt.datetime, load_start: list[float], t0: float) -> dict[str, Any]:
    """When, where and under what load a benchmark's record was made (started at ``started``, load
    ``load_start``, ``time.perf_counter()`` ``t0``), for the end of its results file."""
    from talkface import __version__

    return {"date": started.isoformat(timespec="seconds"), "machine": machine(), "load_start": load_start,
            "load_end": load(), "wall_s": round(time.perf_counter() - t0, 1), "talkface_version": __version__}


def run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)


def prepare(fixtures: Path, out: Path, limit: int | None, log: Path) -> Path:
    if (out / "talkface_dataset.json").exists():
        return out
    cmd = [sys.executable, "-m", "talkface.cli", "prepare", "grid", str(fixtures), "--speakers", "s1",
           "--protocol", "seen", "--out", str(out), "-j", "2"]
    if limit:
        cmd += ["--limit", str(limit)]
    run(cmd, log)
    return out


def train(data: Path, runs: Path, steps: str | None, budget: str | None, seed: int) -> dict[str, Any]:
    from talkface.train import all_stages as recipe

    budget_s = recipe.parse_budget(budget) if budget else None
    parsed = recipe.parse_steps(steps) if steps else {}
    common = {"seed": seed, "devices": "1", "num_nodes": 1, "accelerator": "auto", "precision": None}
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows = recipe.run_pipeline(data, runs, "seen", parsed, budget_s, common)
    recipe.print_summary(rows)
    # CPU seconds of this process (all its threads): on a machine shared with other jobs, CPU time / the
    # thread count approximates the wall time the same steps take on an idle machine
    return {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - cpu0, 1),
            "torch_threads": __import__("torch").get_num_threads(), "budget_s": budget_s,
            "steps_requested": parsed, "stages": stage_records(runs), "validation": rows}


def stage_records(runs: Path) -> dict[str, Any]:
    from talkface.store.checkpoints import read_meta

    out = {}
    for folder in ("lm", "blink", "tex"):
        meta = read_meta(runs / folder / "checkpoints")
        if meta is not None:
            out[meta.stage] = {"step": meta.step, "train_seconds": meta.budget.get("train_seconds"),
                               "stopped_by": meta.budget.get("stopped_by"), "file": meta.weights_name()}
    return out


def generate(data: Path, runs: Path, videos: Path, parts: list[str], seed: int) -> dict[str, Any]:
    from talkface.generation.baselines import get_baseline
    from talkface.generation.generator import load_generator
    from talkface.generation.method import TrainedPipeline
    from talkface.generation.part import generate_part

    gen = load_generator(runs, device="auto")
    timing = {}
    for name in METHODS:
        method = TrainedPipeline() if name == "pipeline" else get_baseline(name)
        t0 = time.perf_counter()
        for part in parts:
            summary = generate_part(gen, method, data, part, videos / part / name, seed=seed, protocol="seen",
                                    quiet=True)
            if summary["failed"]:
                raise RuntimeError(f"{name} {part}: clips failed: {summary['failed']}")
            # one folder per method holding every held-out clip (evaluate pairs by clip id)
            merged = videos / "all" / name
            merged.mkdir(parents=True, exist_ok=True)
            for mp4 in (videos / part / name).glob("*.mp4"):
                link = merged / mp4.name
                if not link.exists():
                    link.symlink_to(mp4.resolve())
        timing[name] = round(time.perf_counter() - t0, 1)
    return {"seconds": timing, "provenance": gen.provenance}


def landmark_stage_per_clip(data: Path, runs: Path, parts: list[str]) -> dict[str, dict[str, Any]]:
    """Mouth LMD (``lmd_mouth:centroid-mean``, crop px) of the landmark stage's own output and of the
    mean face against each held-out clip's aligned landmarks: the landmark stage measured before the
    texture stage and the codec (the videos' ``pipeline`` vs ``mean-face`` rows include both)."""
    import pandas as pd

    from talkface.models.speech_to_landmarks import load_landmark_stage, predict_landmarks
    from talkface.store.dataset import Dataset
    from talkface.train import data as mdata
    from talkface.train.landmarks import lmd_mouth_centroid_mean

    model, config, _ = load_landmark_stage(runs / "lm")
    store = Dataset.open(data)
    ids = [c for part in parts for c in getattr(store.parts("seen"), part)]
    dataset = mdata.open_dataset(data)
    ours, still = {}, {}
    for clip in mdata.load_clips(dataset, ids):
        pred = predict_landmarks(model, clip.features)  # the model's own feature standardisation applied
        mean = np.broadcast_to(model.mean_face.detach().float().numpy(), pred.shape)
        for table, points in ((ours, pred), (still, mean)):
            table[clip.clip_id] = lmd_mouth_centroid_mean([points], [clip.landmarks], [clip.valid],
                                                          config.crop_size)
    return {"landmark-stage": {"lmd_mouth": pd.Series(ours)},
            "mean-face landmarks": {"lmd_mouth": pd.Series(still)}}


def evaluate(data: Path, videos: Path, results: Path, log: Path, workers: int) -> None:
    for name in METHODS:
        run([sys.executable, "-m", "talkface.cli", "evaluate", "--generated", str(videos / "all" / name),
             "--data", str(data), "--protocol", "seen", "--method", name, "--out", str(results),
             "--metrics", ",".join(METRICS), "--workers", str(workers)], log)


def per_clip(results: Path) -> dict[str, dict[str, Any]]:
    from talkface.store.results import ResultsStore

    store = ResultsStore.open(results)
    out: dict[str, dict[str, Any]] = {}
    for name in METHODS:
        out[name] = {}
        for metric in METRICS:
            frame = store.read(name)
            variants = sorted(frame[frame["metric"] == metric]["variant"].unique())
            if variants:
                out[name][metric] = store.values(name, metric, variants[0])
                out[name][metric + ":variant"] = variants[0]
    return out


def mean_ci(values: np.ndarray, seed: int = 0) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    boots = v[rng.integers(0, len(v), size=(2000, len(v)))].mean(axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "n": int(len(v))}


def paired(values: dict[str, dict[str, Any]], a: str, b: str, metric: str) -> dict[str, Any]:
    from talkface.leaderboard.stats import paired_bootstrap

    sa, sb = values[a][metric], values[b][metric]
    clips = sorted(set(sa.index) & set(sb.index))
    test = paired_bootstrap(sa.loc[clips].to_numpy(), sb.loc[clips].to_numpy(), seed=0)
    return {"a": a, "b": b, "metric": metric, "n_clips": test.n_pairs,
            "mean_a": float(np.nanmean(sa.loc[clips])), "mean_b": float(np.nanmean(sb.loc[clips])),
            "diff": test.statistic, "diff_lo": test.diff_low,
            "diff_hi": test.diff_high, "p": test.p_value}


def targets(values: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's numbers to reach, each with what was measured and whether it holds."""
    out = []
    for metric, better in (("lmd_mouth", "lower"), ("psnr", "higher"), ("ssim", "higher")):
        for base in ("static-frame", "mean-face"):
            c = paired(values, "pipeline", base, metric)
            holds = c["diff_hi"] < 0 if better == "lower" else c["diff_lo"] > 0
            out.append({"target": f"pipeline vs {base}: {metric} {better}, 95% interval of the paired "
                                  "difference excludes 0", **c, "holds": bool(holds)})
    c = paired(values, "oracle-landmarks", "static-frame", "psnr")
    out.append({"target": "oracle-landmarks vs static-frame: PSNR at least 1.5 dB higher", **c,
                "holds": bool(c["diff"] >= 1.5)})
    c = paired(values, "oracle-landmarks", "static-frame", "lmd_mouth")
    out.append({"target": "oracle-landmarks vs static-frame: mouth LMD at least 25% lower", **c,
                "ratio": c["mean_a"] / c["mean_b"], "holds": bool(c["mean_a"] <= 0.75 * c["mean_b"])})
    if "landmark-stage" in values:
        c = paired(values, "landmark-stage", "mean-face landmarks", "lmd_mouth")
        out.append({"target": "landmark stage vs mean face (the stage's landmarks against the held-out "
                              "clips' aligned landmarks): mouth LMD at least 25% lower", **c,
                    "ratio": c["mean_a"] / c["mean_b"], "holds": bool(c["mean_a"] <= 0.75 * c["mean_b"])})
    c = paired(values, "pipeline", "mean-face", "lmd_mouth")
    out.append({"target": "landmark stage vs mean face in videos (pipeline vs mean-face, through the "
                          "texture stage and the codec): mouth LMD at least 25% lower", **c,
                "ratio": c["mean_a"] / c["mean_b"],
                "holds": bool(c["mean_a"] <= 0.75 * c["mean_b"])})
    for metric, label in (("blink_rate", "blink rate"), ("blink_duration", "mean blink duration")):
        if metric not in values["pipeline"]:
            continue
        c = paired(values, "pipeline", "ground-truth", metric)
        ratio = c["mean_a"] / c["mean_b"] if c["mean_b"] else float("nan")
        out.append({"target": f"{label} of generated videos within 25% of the real clips' (ground-truth)",
                    **c, "ratio": ratio, "holds": bool(abs(ratio - 1) <= 0.25)})
    if "blink_rate" in values["no-blinks"]:
        nb = mean_ci(values["no-blinks"]["blink_rate"].to_numpy())
        gt = mean_ci(values["ground-truth"]["blink_rate"].to_numpy())
        out.append({"target": "no-blinks ablation: blink rate near zero (reported with the real rate)",
                    "mean_a": nb["mean"], "mean_b": gt["mean"], "a": "no-blinks", "b": "ground-truth",
                    "metric": "blink_rate", "holds": None})
    return out


def write_report(out_dir: Path, record: dict[str, Any]) -> None:
    from talkface.utils import atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(record["mode"])
    cpu_s = float(record["training"].get("cpu_s") or float("nan"))
    threads = max(1, int(record["training"].get("torch_threads", 1)))
    stage_wall = sum(float(v.get("train_seconds") or 0) for v in record["training"]["stages"].values())
    atomic.write_json(out_dir / f"{stem}.json", record)
    r = record
    lines = [f"# Pipeline quality on held-out GRID s1 clips ({r['mode']})", "",
             f"- date: {r['date']}; machine: {r['machine']['cpus']} CPUs ({r['machine']['cpu_model']}), "
             f"{r['machine']['memory']}, GPU: {r['machine']['gpu'] or 'none'}; load average at start "
             f"{r['load_start']}, at end {r['load_end']}",
             f"- data: {r['data']} ({r['split']})",
             f"- training: budget {r['budget'] or 'none'}, steps {r['steps'] or 'recipe defaults'}, seed "
             f"{r['seed']}; reached: " + ", ".join(
                 f"{k} {v['step']} steps in {v['train_seconds']:.0f} s ({v['stopped_by']})"
                 for k, v in r["training"]["stages"].items()),
             f"- training wall time summed over the stages' checkpoint.json: {stage_wall / 60:.1f} min"
             + (f"; CPU time {cpu_s:.0f} s on {threads} threads (about {cpu_s / threads / 60:.0f} "
                "idle-machine minutes)" if cpu_s == cpu_s else ""),
             *([f"- stages trained {r['regenerated']['trained']}; videos generated and scored again "
                f"on {r['date']} with `--regenerate` (generation-time changes)"]
               if r.get("regenerated") else []),
             f"- generation seed {r['seed']}; wall time: train {r['training']['wall_s']:.0f} s, generate "
             f"{sum(r['generation']['seconds'].values()):.0f} s, evaluate {r['evaluate_s']:.0f} s", "",
             "## Per method (mean over clips [95% bootstrap interval])", "",
             "| method | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name in METHODS:
        cells = []
        for metric in METRICS:
            s = r["methods"][name].get(metric)
            cells.append("n/a" if s is None or s["n"] == 0
                         else f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Variants: " + ", ".join(f"{m} `{v}`" for m, v in r["variants"].items()), "",
              "## Validation of the trained stages (the files generate loaded; recipe summary)", "",
              "| stage | step | number | ours | baseline |", "|---|---|---|---|---|"]
    for v in r["training"]["validation"]:
        fmt = (lambda x: "n/a" if x is None else f"{x:.4g}")  # noqa: E731
        lines.append(f"| {v['stage']} | {v['step']} | {v['label']} | {fmt(v['ours'])} | {fmt(v['baseline'])} "
                     f"({v['baseline_name']}) |")
    lines += ["",
              "## The issue's targets (paired over clips: difference a - b, 95% bootstrap interval)", "",
              "| target | a | b | n | diff [95%] | holds |", "|---|---|---|---|---|---|"]
    for t in r["targets"]:
        diff = (f"{t['diff']:+.3f} [{t['diff_lo']:+.3f}, {t['diff_hi']:+.3f}]" if "diff" in t
                else f"{t['mean_a']:.2f} vs {t['mean_b']:.2f}")
        if "ratio" in t:
            diff += f" (ratio {t['ratio']:.2f})"
        holds = {True: "yes", False: "**no**", None: "-"}[t["holds"]]
        lines.append(f"| {t['target']} | {t['mean_a']:.3f} | {t['mean_b']:.3f} | {t.get('n_clips', '')} | "
                     f"{diff} | {holds} |")
    if r["mode"] == "quick":
        lines += ["", "Quick mode: a handful of training steps on 30 clips. It shows that preparing, the "
                  "recipe, generation, evaluation and the paired comparison run end to end; its numbers say "
                  "nothing about the issue's targets."]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")


def report_stem(mode: str) -> str:
    """``pipeline_quality`` for the budgeted run, ``pipeline_quality.quick`` for ``--quick``."""
    return "pipeline_quality" if mode == "full" else f"pipeline_quality.{mode}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="45m",
                    help="training wall-time budget for all stages (recipe); 'none' with --steps: fixed "
                         "steps, for a machine shared with other jobs, where wall time buys fewer steps")
    ap.add_argument("--steps", default=None, help="recipe steps, e.g. lm=1500,blink=400,tex=1000")
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK_CLIPS} clips, steps {QUICK_STEPS}, no budget: proves the path in minutes")
    ap.add_argument("--fixtures", type=Path, default=fixtures_dir() / "grid")
    ap.add_argument("--data", type=Path, default=None, help="a prepared store with the seen protocol")
    ap.add_argument("--work", type=Path, default=Path("/tmp/talkface_bench_pipeline_quality"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--parts", default="val,test", help="held-out parts to generate and score")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="evaluate workers")
    ap.add_argument("--report-only", action="store_true",
                    help="recompute the tables and targets from a finished run's results and its JSON in "
                         "--out (no training, generation or evaluation)")
    ap.add_argument("--regenerate", action="store_true",
                    help="keep a finished run's trained stages (its runs/ in --work and its training record "
                         "in --out) and generate, evaluate and report again: for a change made after "
                         "training (generation, retargeting, metrics)")
    args = ap.parse_args(argv)

    mode = "quick" if args.quick else "full"
    budget = None if args.quick or args.budget.lower() in ("none", "0") else args.budget
    if budget is None and not (args.steps or args.quick):
        ap.error("--budget none needs --steps")
    steps = args.steps or (QUICK_STEPS if args.quick else None)
    work = args.work / mode
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    record: dict[str, Any] = {"mode": mode, "date": now,
                              "machine": machine(), "load_start": load(), "budget": budget, "steps": steps,
                              "seed": args.seed, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    if args.report_only:
        return report(args.out, work, mode)
    data = args.data or prepare(args.fixtures, work / "data", QUICK_CLIPS if args.quick else None, log)
    from talkface.store.dataset import Dataset

    parts = Dataset.open(data).parts("seen")
    held = [p for p in args.parts.split(",") if getattr(parts, p)]
    record["data"] = str(data)
    record["split"] = (f"protocol seen: train {len(parts.train)} clips (trained on), val {len(parts.val)} "
                       f"(validation only), test {len(parts.test)}; scored: {' + '.join(held)}")
    if args.regenerate:
        record.update(previous_training(args.out, work, mode))
        for stale in ("videos", "results"):
            shutil.rmtree(work / stale, ignore_errors=True)
    else:
        record["training"] = train(data, work / "runs", steps, budget, args.seed)
    record["generation"] = generate(data, work / "runs", work / "videos", held, args.seed)
    t0 = time.perf_counter()
    evaluate(data, work / "videos", work / "results", log, args.workers)
    record["evaluate_s"] = round(time.perf_counter() - t0, 1)
    record["held_out_parts"] = held
    record["load_end"] = load()
    return finish(args.out, work, record)


def previous_training(out: Path, work: Path, mode: str) -> dict[str, Any]:
    """``--regenerate``: the finished run's training settings and record, checked against its runs/."""
    import json

    path = out / f"{report_stem(mode)}.json"
    if not path.exists() or not (work / "runs").is_dir():
        raise SystemExit(f"--regenerate needs a finished run: {path} and {work / 'runs'}")
    old = json.loads(path.read_text())
    if stage_records(work / "runs") != old["training"]["stages"]:
        raise SystemExit(f"{work / 'runs'} holds other checkpoints than {path} records")
    return {k: old[k] for k in ("budget", "steps", "seed", "training") if k in old} | {
        "regenerated": {"trained": old["date"], "command": old.get("command")}}


def report(out: Path, work: Path, mode: str) -> int:
    """``--report-only``: the tables and targets again from a finished run (its JSON and results)."""
    import json

    record = json.loads((out / f"{report_stem(mode)}.json").read_text())
    record.setdefault("held_out_parts", ["val", "test"])
    return finish(out, work, record)


def finish(out: Path, work: Path, record: dict[str, Any]) -> int:
    """Per-clip values, per-method summaries and the issue's targets -> JSON and Markdown in ``out``."""
    values = per_clip(work / "results")
    values.update(landmark_stage_per_clip(Path(record["data"]), work / "runs", record["held_out_parts"]))
    record["variants"] = {m: values["pipeline"].get(m + ":variant") for m in METRICS}
    record["methods"] = {name: {m: mean_ci(values[name][m].to_numpy()) for m in METRICS if m in values[name]}
                         for name in METHODS}
    record["per_clip"] = {name: {m: {c: (None if not np.isfinite(v) else float(v))
                                     for c, v in values[name][m].items()}
                                 for m in METRICS if m in values[name]} for name in METHODS}
    record["landmark_stage"] = {
        name: {"lmd_mouth": mean_ci(values[name]["lmd_mouth"].to_numpy()),
               "per_clip": {c: float(v) for c, v in values[name]["lmd_mouth"].items()}}
        for name in ("landmark-stage", "mean-face landmarks")}
    record["targets"] = targets(values)
    write_report(out, record)
    print((out / f"{report_stem(record['mode'])}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
