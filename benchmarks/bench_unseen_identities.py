"""Issue 20's measurement: does the pipeline animate people it never saw, and keep who they are?

    python benchmarks/bench_unseen_identities.py --budget 45m       # the issue's run (2-core CPU)
    python benchmarks/bench_unseen_identities.py --quick            # minutes: proves the path

1. Prepare GRID s1 (the fixtures' normal layout) and s4 (the high-quality layout, ``grid_hq``) into one
   dataset with ``--protocol unseen-identity --test-speakers s4`` (``--reverse``: test speaker s1, train
   on s4). So every test clip is a person the stages never saw; ``val`` is 10% of the training
   speaker's clips: held out, but a seen person.
2. Train with the one-command recipe (``talkface.train.all_stages.run_pipeline``, the code of ``talkface
   train pipeline``) on the ``train`` part within ``--budget``.
3. Generate, on ``test`` (unseen) and ``val`` (seen, held out), the pipeline (and
   ``pipeline-face-parts``: the same stages composed by the ``face-parts`` rule, the texture stage's
   mouth and eyes pasted into the identity, as before ``interior``) and the baselines:
   ``static-frame``, ``warp``, ``warp-tps``, ``oracle-warp``, ``oracle-landmarks``, ``mean-face``,
   ``ground-truth``; the identity image is a frame of **another** clip of the same speaker
   (``--identity-from other-clip``).
4. ``talkface evaluate`` each (PSNR, SSIM, mouth and face LMD, blink rate and duration, and
   ``identity_dlib``: dlib's face descriptor distance to the identity image).
5. Paired comparisons over clips (bootstrap, 95%) against the issue's targets, written to
   ``--out``/unseen_identities.json and .md with machine, load, date, budget and seed, and a contact
   sheet of generated frames of the unseen speaker (docs/images/unseen_identities.png).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_pipeline_quality import load, machine, mean_ci, paired, run, stage_records

from talkface.utils.fixtures import fixtures_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = fixtures_dir()
PROTOCOL = "unseen-identity"
METHODS = (
    "pipeline",
    "pipeline-face-parts",
    "ground-truth",
    "static-frame",
    "warp",
    "warp-tps",
    "oracle-warp",
    "oracle-landmarks",
    "mean-face",
)
METRICS = ("psnr", "ssim", "lmd_mouth", "lmd_face", "blink_rate", "blink_duration", "identity_dlib")
QUICK_STEPS = "lm=60,blink=40,tex=40"
SHEET = ROOT / "docs" / "images" / "unseen_identities.png"


#: where the benchmark trains and generates (kept, so --skip-training and bench_render_fidelity.py reuse it)
DEFAULT_WORK = Path("/tmp/talkface_bench_unseen_identities")


def prepare(out: Path, test_speaker: str, log: Path, quick: bool) -> Path:
    if (out / "talkface_dataset.json").exists():
        return out
    base = ["--protocol", PROTOCOL, "--test-speakers", test_speaker, "--out", str(out), "-j", "2"]
    limit = ["--limit", "30"] if quick else []
    run(
        [
            sys.executable,
            "-m",
            "talkface.cli",
            "prepare",
            "grid",
            str(FIXTURES / "grid"),
            "--speakers",
            "s1",
            *base,
            *limit,
        ],
        log,
    )
    run(
        [sys.executable, "-m", "talkface.cli", "prepare", "grid", str(FIXTURES / "grid_hq"), *base, *limit],
        log,
    )
    return out


def train(data: Path, runs: Path, steps: str | None, budget: str | None, seed: int,
          feature_norm: str | None = None) -> dict[str, Any]:
    from talkface.train import all_stages

    budget_s = all_stages.parse_budget(budget) if budget else None
    parsed = all_stages.parse_steps(steps) if steps else {}
    common = {"seed": seed, "devices": "1", "num_nodes": 1, "accelerator": "auto", "precision": None}
    t0, cpu0 = time.perf_counter(), time.process_time()
    options = {"landmarks": {"feature_norm": feature_norm}} if feature_norm else {}
    rows = all_stages.run_pipeline(data, runs, PROTOCOL, parsed, budget_s, common, stage_options=options)
    all_stages.print_summary(rows)
    return {
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "budget_s": budget_s,
        "steps_requested": parsed,
        "stages": stage_records(runs),
        "validation": rows,
    }


def generate(data: Path, runs: Path, videos: Path, parts: list[str], seed: int) -> dict[str, Any]:
    from talkface.generation.baselines import get_baseline
    from talkface.generation.generator import load_generator
    from talkface.generation.method import TrainedPipeline
    from talkface.generation.part import generate_part

    gen = load_generator(runs, device="auto")
    # the same stages with the texture stage's frame pasted into the identity by the face-parts rule
    # (its mouth and eye ellipses), the composite every run used before "interior"
    face_parts = load_generator(runs, device="auto", composite_rule="face-parts")
    timing = {}
    for name in METHODS:
        method = TrainedPipeline() if name.startswith("pipeline") else get_baseline(name)
        t0 = time.perf_counter()
        for part in parts:
            summary = generate_part(
                face_parts if name == "pipeline-face-parts" else gen,
                method,
                data,
                part,
                videos / part / name,
                seed=seed,
                protocol=PROTOCOL,
                quiet=True,
                identity_from="other-clip",
            )
            if summary["failed"]:
                print(f"{name} {part}: clips failed: {summary['failed']}", file=sys.stderr)
        timing[name] = round(time.perf_counter() - t0, 1)
    return {"seconds": timing, "provenance": gen.provenance}


def retarget_check(data: Path, runs: Path, parts: list[str]) -> dict[str, Any]:
    """Landmark level, before any rendering: mouth LMD (crop pixels) of the trained stages' retargeted
    landmarks (no blinks) against each clip's own prepared landmarks, with the mouth scale
    (:func:`talkface.models.retarget.mouth_scale`) and with the face similarity alone, and of the
    identity frame's landmarks held still; paired over clips."""
    import pandas as pd

    from talkface.core.face68 import lmd
    from talkface.generation.generator import FPS, clip_inputs, load_generator, speech_landmarks
    from talkface.models.retarget import fit_motion_transform, mouth_scale, rest_anchor, retarget
    from talkface.store.dataset import Dataset

    ds = Dataset.open(data)
    gen = load_generator(runs, device="cpu", stages=("landmarks",))
    size = ds.crop_size
    out: dict[str, Any] = {}
    for part in parts:
        rows: dict[str, dict[str, float]] = {"mouth-scaled": {}, "similarity": {}, "still": {}}
        scales: list[float] = []
        for clip in ds.parts(PROTOCOL)[part]:
            inputs = clip_inputs(ds, clip, "other-clip")
            feats = gen.features.compute(inputs.audio, n_frames=inputs.n_frames, fps=FPS)
            unit = speech_landmarks(gen, feats)
            anchor, identity = rest_anchor(unit, gen.mean_face), inputs.identity_px / size
            ref = inputs.reference_landmarks
            for name, on in (("mouth-scaled", True), ("similarity", False)):
                rows[name][clip] = lmd(retarget(unit, anchor, identity, scale_mouth=on) * size, ref)
            rows["still"][clip] = lmd(np.repeat(inputs.identity_px[None], len(ref), 0), ref)
            scales.append(mouth_scale(anchor, identity, fit_motion_transform(anchor, identity)))
        values = {name: {"lmd_mouth": pd.Series(v)} for name, v in rows.items()}
        out[part] = {
            "lmd_mouth": {name: mean_ci(np.array(list(v.values()))) for name, v in rows.items()},
            "scaled_vs_similarity": paired(values, "mouth-scaled", "similarity", "lmd_mouth"),
            "mouth_scale": {"mean": float(np.mean(scales)), "min": float(np.min(scales)),
                            "max": float(np.max(scales)), "n": len(scales)},
        }
    return out


def evaluate(data: Path, videos: Path, results: Path, parts: list[str], log: Path, workers: int) -> None:
    for part in parts:
        for name in METHODS:
            run(
                [
                    sys.executable,
                    "-m",
                    "talkface.cli",
                    "evaluate",
                    "--generated",
                    str(videos / part / name),
                    "--data",
                    str(data),
                    "--protocol",
                    PROTOCOL,
                    "--part",
                    part,
                    "--method",
                    name,
                    "--out",
                    str(results / part),
                    "--metrics",
                    ",".join(METRICS),
                    "--workers",
                    str(workers),
                ],
                log,
            )


def per_clip(results: Path) -> dict[str, dict[str, Any]]:
    from talkface.store.results import ResultsStore

    store = ResultsStore.open(results)
    out: dict[str, dict[str, Any]] = {}
    for name in METHODS:
        frame = store.read(name)
        out[name] = {}
        for metric in METRICS:
            variants = sorted(frame[frame["metric"] == metric]["variant"].unique())
            if variants:
                out[name][metric] = store.values(name, metric, variants[0])
                out[name][metric + ":variant"] = variants[0]
    return out


def targets(values: dict[str, dict[str, Any]], unseen: bool) -> list[dict[str, Any]]:
    """The issue's numbers to reach on one part, each with what was measured and whether it holds."""
    out = []
    c = paired(values, "pipeline", "static-frame", "lmd_mouth")
    ratio = c["mean_a"] / c["mean_b"]
    out.append(
        {
            "target": "mouth LMD at least 20% lower than static-frame",
            **c,
            "ratio": ratio,
            "holds": bool(ratio <= 0.8),
        }
    )
    for metric in ("psnr", "ssim"):
        c = paired(values, "pipeline", "static-frame", metric)
        out.append(
            {
                "target": f"{metric} not lower than static-frame (95% interval of the difference reaches "
                "0 or above)",
                **c,
                "holds": bool(c["diff_hi"] >= 0),
            }
        )
    if "identity_dlib" in values["pipeline"]:
        c = paired(values, "pipeline", "static-frame", "identity_dlib")
        worst = float(np.nanmax(values["pipeline"]["identity_dlib"].to_numpy()))
        out.append(
            {
                "target": "dlib descriptor distance to the identity image at most static-frame's + 0.05, "
                "no clip above 0.3",
                **c,
                "worst_clip": worst,
                "holds": bool(c["mean_a"] <= c["mean_b"] + 0.05 and worst <= 0.3),
            }
        )
    for metric, label in (("blink_rate", "blink rate"), ("blink_duration", "blink duration")):
        if metric in values["pipeline"] and metric in values["ground-truth"]:
            c = paired(values, "pipeline", "ground-truth", metric)
            r = c["mean_a"] / c["mean_b"] if c["mean_b"] else float("nan")
            out.append(
                {
                    "target": f"{label} within 25% of the real clips'",
                    **c,
                    "ratio": r,
                    "holds": bool(abs(r - 1) <= 0.25),
                }
            )
    for t in out:
        t["part"] = "unseen" if unseen else "seen (held out)"
    return out


def contact_sheet(data: Path, videos: Path, clip_ids: list[str], out: Path, frame: int = 40) -> None:
    """Rows: clips of the unseen speaker; columns: real | static-frame | warp | pipeline, frame ``frame``."""
    import cv2

    from talkface.core import media

    rows = []
    for clip in clip_ids:
        cells = []
        for name in ("ground-truth", "static-frame", "warp", "pipeline"):
            frames = media.read_video(videos / name / f"{clip}.mp4")
            img = np.ascontiguousarray(frames[min(frame, len(frames) - 1)])
            cv2.putText(img, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(img)
        rows.append(np.concatenate(cells, axis=1))
    from talkface.utils import atomic

    ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    atomic.write_bytes(out, png.tobytes())


def write_report(out_dir: Path, record: dict[str, Any]) -> None:
    from talkface.utils import atomic

    stem = "unseen_identities" if record["mode"] == "full" else f"unseen_identities.{record['mode']}"
    atomic.write_json(out_dir / f"{stem}.json", record)
    r = record
    lines = [
        f"# Unseen identities: trained on {r['train_speakers']}, tested on {r['test_speakers']} "
        f"({r['mode']})",
        "",
        f"- date: {r['date']}; machine: {r['machine']['cpus']} CPUs ({r['machine']['cpu_model']}), "
        f"{r['machine']['memory']}, GPU: {r['machine']['gpu'] or 'none'}; load average at start "
        f"{r['load_start']}, at end {r['load_end']}",
        f"- data: {r['split']}; identity image: another clip of the same speaker (other-clip)",
        f"- training: budget {r['budget'] or 'none'}, steps {r['steps'] or 'recipe defaults'}, seed "
        f"{r['seed']}; reached: "
        + ", ".join(
            f"{k} {v['step']} steps in {v['train_seconds']:.0f} s ({v['stopped_by']})"
            for k, v in r["training"]["stages"].items()
        )
        + (" (stages trained by an earlier run of this benchmark, reused with --skip-training)"
           if r["training"].get("reused") else ""),
        "",
    ]
    for part, label in (("test", "unseen speaker"), ("val", "seen speaker, held-out clips")):
        if part not in r["methods"]:
            continue
        lines += [
            f"## {label} ({part}): mean over clips [95% bootstrap interval]",
            "",
            "| method | " + " | ".join(METRICS) + " |",
            "|---" * (len(METRICS) + 1) + "|",
        ]
        for name in METHODS:
            cells = []
            for metric in METRICS:
                s = r["methods"][part][name].get(metric)
                cells.append(
                    "n/a" if s is None or s["n"] == 0 else f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"
                )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| target | pipeline | baseline | n | diff [95%] | holds |",
            "|---|---|---|---|---|---|",
        ]
        for t in r["targets"][part]:
            diff = f"{t['diff']:+.3f} [{t['diff_lo']:+.3f}, {t['diff_hi']:+.3f}]"
            if "ratio" in t:
                diff += f" (ratio {t['ratio']:.2f})"
            if "worst_clip" in t:
                diff += f" (worst clip {t['worst_clip']:.3f})"
            holds = {True: "yes", False: "**no**"}[t["holds"]]
            lines.append(
                f"| {t['target']} | {t['mean_a']:.3f} | {t['mean_b']:.3f} ({t['b']}) | "
                f"{t.get('n_clips', '')} | {diff} | {holds} |"
            )
        lines.append("")
    if r.get("retarget"):
        lines += [
            "## retargeting, landmark level: mouth LMD of the retargeted landmarks against the clip's own "
            "(crop px, no rendering)",
            "",
            "| part | still identity | face similarity only | with mouth scale | diff [95%] | mouth scale |",
            "|---|---|---|---|---|---|",
        ]
        for part, t in r["retarget"].items():
            m, d, k = t["lmd_mouth"], t["scaled_vs_similarity"], t["mouth_scale"]
            lines.append(
                f"| {part} | {m['still']['mean']:.3f} | {m['similarity']['mean']:.3f} | "
                f"{m['mouth-scaled']['mean']:.3f} | {d['diff']:+.3f} [{d['diff_lo']:+.3f}, "
                f"{d['diff_hi']:+.3f}] | {k['mean']:.2f} ({k['min']:.2f}-{k['max']:.2f}) |"
            )
        lines.append("")
    if r["mode"] == "quick":
        lines.append(
            "Quick mode: a handful of steps on 30 clips a speaker; its numbers say nothing about the "
            "targets."
        )
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--budget", default="45m", help="training wall-time budget for all stages; 'none' with --steps"
    )
    ap.add_argument("--steps", default=None, help="recipe steps, e.g. lm=1500,blink=400,tex=1000")
    ap.add_argument("--quick", action="store_true", help=f"30 clips a speaker, steps {QUICK_STEPS}")
    ap.add_argument("--reverse", action="store_true", help="train on s4, test on s1")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--feature-norm", choices=("dataset", "utterance"), default=None,
                    help="the landmark stage's feature standardisation (default: the stage's own; "
                    "bench_unheard_voices.py compares the recipes)")
    ap.add_argument("--workers", type=int, default=2, help="evaluate workers")
    ap.add_argument("--skip-training", action="store_true", help="use the stages already under --work/runs")
    args = ap.parse_args(argv)

    mode = "quick" if args.quick else "full"
    budget = None if args.quick or args.budget.lower() in ("none", "0") else args.budget
    if budget is None and not (args.steps or args.quick):
        ap.error("--budget none needs --steps")
    steps = args.steps or (QUICK_STEPS if args.quick else None)
    test_speaker, train_speaker = ("s1", "s4") if args.reverse else ("s4", "s1")
    work = args.work / f"{mode}-{train_speaker}-to-{test_speaker}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    record: dict[str, Any] = {
        "mode": mode,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_start": load(),
        "budget": budget,
        "steps": steps,
        "seed": args.seed,
        "feature_norm": args.feature_norm or "the landmark stage's default",
        "train_speakers": train_speaker,
        "test_speakers": test_speaker,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    data = prepare(work / "data", test_speaker, log, args.quick)
    from talkface.store.dataset import Dataset

    parts = Dataset.open(data).parts(PROTOCOL)
    record["split"] = (
        f"protocol {PROTOCOL}: train {len(parts.train)} clips, val {len(parts.val)} (held out, "
        f"seen speaker), test {len(parts.test)} (unseen speaker {test_speaker})"
    )
    runs = work / "runs"
    record["training"] = (
        {"stages": stage_records(runs), "wall_s": None, "reused": True}
        if args.skip_training
        else train(data, runs, steps, budget, args.seed, args.feature_norm)
    )
    held = [p for p in ("test", "val") if getattr(parts, p)]
    record["retarget"] = retarget_check(data, runs, held)
    record["generation"] = generate(data, runs, work / "videos", held, args.seed)
    t0 = time.perf_counter()
    evaluate(data, work / "videos", work / "results", held, log, args.workers)
    record["evaluate_s"] = round(time.perf_counter() - t0, 1)
    record["methods"], record["targets"], record["per_clip"] = {}, {}, {}
    for part in held:
        values = per_clip(work / "results" / part)
        record["methods"][part] = {
            n: {m: mean_ci(values[n][m].to_numpy()) for m in METRICS if m in values[n]} for n in METHODS
        }
        record["per_clip"][part] = {
            n: {
                m: {c: (None if not np.isfinite(v) else float(v)) for c, v in values[n][m].items()}
                for m in METRICS
                if m in values[n]
            }
            for n in METHODS
        }
        record["targets"][part] = targets(values, unseen=part == "test")
    record["load_end"] = load()
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out, record)
    if mode == "full" and not args.reverse:
        contact_sheet(data, work / "videos" / "test", sorted(parts.test)[:4], SHEET)
    print(
        (
            args.out / ("unseen_identities.md" if mode == "full" else "unseen_identities.quick.md")
        ).read_text()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
