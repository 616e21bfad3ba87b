"""Voices never heard: does the landmark stage's mouth motion transfer from one speaker's voice to
another's, and what in its recipe makes it?

    python benchmarks/bench_unheard_voices.py --out benchmarks/results [--steps 7000] [--work DIR]
    python benchmarks/bench_unheard_voices.py --direction reverse        # only s4's voice -> s1's

(about 35 minutes on 2 cores: four trainings of 7000 steps, seven scorings)

1. Prepare GRID s1 (normal layout) and s4 (high-quality layout; a woman) into one dataset with
   ``--protocol unseen-identity --test-speakers s4`` (``bench_unseen_identities.prepare``).
2. Train the landmark stage alone on s1's ``train`` clips, ``--steps`` steps, seed 0, once per recipe
   (:data:`RECIPES`): the features standardised per dataset only (the stage's old default), per utterance
   first (``--feature-norm utterance``), and per utterance with the voice augmentation (``--voice-augment``:
   the stage's default now); everything else at its default. The last two are scored twice: at gain 1
   and with the motion gain the stage fitted on the held-out s1 clips (what generation uses).
3. On s1's held-out ``val`` clips (a voice heard) and all of s4 (``test``: a voice never heard), with the
   identity frame of another clip of the same speaker (``generate``'s rule): the stage's landmarks
   retargeted to that frame (``to_identity``, as generate does; no blinks, no texture) against the
   clip's real aligned landmarks, mouth LMD (points 48-67, centroid-aligned per frame, crop px), beside
   the identity frame's own landmarks held still (the still mouth); and per clip the correlation and
   the standard deviation of the mouth opening (inner-lip gap / mouth width) of predicted and real.
   This is the landmark stage measured before the texture stage and the codec.
Paired over clips: the ratio of mean LMDs and the 95% bootstrap interval of the per-clip difference.
The gain is fitted on the very s1 clips scored as "voice heard" (one number over 14 clips); s4 plays
no part in any fit. Writes DIR/unheard_voices.json (machine, date, load, steps, seed, dataset counts).

Then the voices swapped (issue 20's reverse protocol; ``--direction`` picks one): the stage's default
recipe trained on s4, scored on s4's held-out clips (a voice heard) and on every s1 clip (a voice never
heard), written to DIR/unheard_voices.reverse.json. Both directions together say whether a voice never
heard is harder for the stage than a heard one whichever voice it learned from.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_pipeline_quality import load, mean_ci, run_stamp
from bench_unseen_identities import PROTOCOL, prepare
from timing import write_result

SEED = 0
#: recipe name -> (words, build_stage options); each trained once
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "dataset": ("`--feature-norm dataset --no-voice-augment`",
                {"feature_norm": "dataset", "voice_augment": False}),
    "utterance": ("`--feature-norm utterance --no-voice-augment`",
                  {"feature_norm": "utterance", "voice_augment": False}),
    "utterance+augment": ("`--feature-norm utterance --voice-augment` (the default)",
                          {"feature_norm": "utterance", "voice_augment": True}),
}
#: recipes also scored with the motion gain they fitted (every recipe is scored at gain 1)
WITH_GAIN = ("utterance", "utterance+augment")


def train(data: Path, out: Path, options: dict[str, Any], steps: int) -> dict[str, Any]:
    from talkface.train.landmarks import build_stage
    from talkface.train.loop import TrainSettings, run_training

    stage = build_stage(data, PROTOCOL, **options)
    settings = TrainSettings(out_dir=out, max_steps=steps, seed=SEED, accelerator="cpu", val_every=steps,
                             ckpt_every=steps)
    t0 = time.perf_counter()
    run_training(stage, settings, quiet=True)
    return {"steps": steps, "wall_s": round(time.perf_counter() - t0, 1)}


def score(gen: Any, data: Path, part: str) -> dict[str, dict[str, float]]:
    """Per clip of ``part``, with the landmark stage of ``gen`` at its current motion gain: LMD of the
    retargeted prediction and of the still identity mouth, and the mouth opening's correlation and
    spread (predicted, real)."""
    from talkface.core.face68 import lmd, mouth_opening
    from talkface.generation.generator import clip_inputs, speech_landmarks, to_identity
    from talkface.store.dataset import Dataset

    ds = Dataset.open(data)
    rows: dict[str, dict[str, float]] = {}
    for cid in sorted(ds.parts(PROTOCOL)[part]):
        clip = clip_inputs(ds, cid)
        feats = gen.features.compute(clip.audio, n_frames=clip.n_frames, fps=clip.fps)
        pred = to_identity(gen, speech_landmarks(gen, feats), clip.identity_px, clip.crop_size)
        real = clip.reference_landmarks
        still = np.repeat(clip.identity_px[None], len(real), axis=0)
        a, b = mouth_opening(pred), mouth_opening(real)
        ok = np.isfinite(a) & np.isfinite(b)
        rows[cid] = {"lmd_mouth": lmd(pred, real), "lmd_mouth_still": lmd(still, real),
                     "opening_corr": float(np.corrcoef(a[ok], b[ok])[0, 1]),
                     "opening_std_pred": float(np.std(a[ok])), "opening_std_real": float(np.std(b[ok]))}
    return rows


def summarise(rows: dict[str, dict[str, float]]) -> dict[str, Any]:
    from talkface.leaderboard.stats import paired_bootstrap

    ours = np.array([r["lmd_mouth"] for r in rows.values()])
    still = np.array([r["lmd_mouth_still"] for r in rows.values()])
    test = paired_bootstrap(ours, still, seed=SEED)
    out: dict[str, Any] = {"clips": len(rows), "lmd_mouth": mean_ci(ours), "lmd_mouth_still": mean_ci(still),
                           "ratio_to_still": float(np.nanmean(ours) / np.nanmean(still)),
                           "diff_to_still": test.statistic, "diff_lo": test.diff_low,
                           "diff_hi": test.diff_high}
    for key in ("opening_corr", "opening_std_pred", "opening_std_real"):
        out[key] = mean_ci(np.array([r[key] for r in rows.values()]))
    return out


#: the two directions: (file name, voice trained on and heard, voice never heard)
DIRECTIONS = {"forward": ("unheard_voices.json", "s1", "s4"),
              "reverse": ("unheard_voices.reverse.json", "s4", "s1")}
#: what the reverse direction trains unless --recipes says otherwise: the stage's default recipe
REVERSE_RECIPES = ("utterance+augment",)


def run_direction(work: Path, heard: str, never: str, recipes: list[str], steps: int) -> dict[str, Any]:
    """Prepare (once per direction), train each recipe on ``heard`` and score it on ``heard``'s held-out
    clips and on every clip of ``never``."""
    from talkface.generation.generator import load_generator
    from talkface.store.dataset import Dataset

    started, load_start, t0 = dt.datetime.now(dt.timezone.utc), load(), time.perf_counter()
    suffix = "" if heard == "s1" else f"-{heard}"
    data = prepare(work / f"data{suffix}", never, work / "commands.log", quick=False)
    counts = {k: len(v) for k, v in Dataset.open(data).parts(PROTOCOL).as_dict().items()}
    runs: dict[str, Any] = {}
    for name in recipes:
        words, options = RECIPES[name]
        run_dir = work / f"runs{suffix}-{name}"
        training = train(data, run_dir / "lm", options, steps)
        gen = load_generator(run_dir, "cpu", stages=("landmarks",), data=data)
        fitted = float(gen.landmark_model.motion_gain)
        gains = {name: 1.0, f"{name}+gain": fitted} if name in WITH_GAIN else {name: 1.0}
        for row, gain in gains.items():
            gen.landmark_model.motion_gain.fill_(gain)
            parts = {part: score(gen, data, part) for part in ("val", "test")}
            runs[row] = {"recipe": words, "options": options, "training": training,
                         "motion_gain": gain, "fitted_gain": fitted,
                         "parts": {p: summarise(rows) for p, rows in parts.items()}, "per_clip": parts}
            ratios = {p: round(v["ratio_to_still"], 3) for p, v in runs[row]["parts"].items()}
            print(f"trained on {heard}:", row, ratios, flush=True)
    return {
        "benchmark": "unheard_voices",
        "what": ("the landmark stage's retargeted mouth (no blinks, no texture) against the real aligned "
                 "landmarks, beside the identity frame's mouth held still; mouth LMD (points 48-67, "
                 "centroid-aligned per frame, crop px), mean over clips with a 95% bootstrap interval"),
        "protocol": f"{PROTOCOL}: trained on {heard} (train), scored on {heard} held out (val: a voice "
                    f"heard) and {never} (test: a voice never heard); identity frame from another clip of "
                    "the same speaker",
        "speakers": {"heard": heard, "never_heard": never},
        "parts": counts,
        "steps": steps,
        "seed": SEED,
        "feature_backend": "logmel (the dataset's default)",
        "runs": runs,
        **run_stamp(started, load_start, t0),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--steps", type=int, default=7000, help="landmark-stage steps per recipe (the 45-minute "
                    "recipe reaches more; at 1500 the voice augmentation had not yet paid off)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--direction", choices=("both", *DIRECTIONS), default="both",
                    help="forward: train on s1, score on s4 (unheard_voices.json); reverse: train on s4, "
                    "score on s1 (unheard_voices.reverse.json); both (default)")
    ap.add_argument("--recipes", default=None,
                    help=f"comma-separated recipes to train (default: all of {', '.join(RECIPES)} forward, "
                    f"{', '.join(REVERSE_RECIPES)} reverse)")
    args = ap.parse_args(argv)
    chosen = None if args.recipes is None else [r.strip() for r in args.recipes.split(",") if r.strip()]
    if chosen is not None:
        unknown = sorted(set(chosen) - set(RECIPES))
        if unknown or not chosen:
            ap.error(f"--recipes: unknown {', '.join(unknown) or '(none given)'}; choose from "
                     f"{', '.join(RECIPES)}")
    directions = list(DIRECTIONS) if args.direction == "both" else [args.direction]
    with tempfile.TemporaryDirectory(prefix="tf-voices-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for direction in directions:
            name, heard, never = DIRECTIONS[direction]
            recipes = chosen or (list(RECIPES) if direction == "forward" else list(REVERSE_RECIPES))
            write_result(args.out, name, run_direction(work, heard, never, recipes, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
