"""Where the unseen speaker's mouth LMD is lost: does the texture stage draw the mouth the landmarks ask
for, on a face it was trained on and on one it never saw?

    python benchmarks/bench_render_fidelity.py [--work W] [--out benchmarks/results] [--scale 1.3]

``W`` is a working folder of ``bench_unseen_identities.py`` (default: its default; its
``full-s1-to-s4/data`` and ``runs``: the dataset with the unseen-identity protocol and the stages trained
on s1), so run that benchmark first (``make bench-all`` runs them in that order); about 5 minutes on 2
cores.

Per clip of the trained speaker's held-out clips (``val``) and of the unseen speaker (``test``), identity
image from another clip of the same speaker (generate's rule): the stages' target landmarks (speech,
retargeted; no blinks: the eyes are not what this measures) rendered by the trained pipeline (texture
stage composed as generate composes it) and by the ``warp`` baseline, without the codec; the rendered
frames' landmarks found by the evaluation's detector (dlib, tracked as ``evaluate`` tracks) and so are
the reference crops'. Reported:

- ``drawn_vs_asked``: mouth LMD (points 48-67, centroid-aligned per frame, crop px) of the detected
  landmarks against the landmarks the renderer was given; the rendering's own error;
- ``opening_bias`` and ``opening_slope``: the detected mouth opening (inner-lip gap over mouth width,
  ``face68.mouth_opening``) minus the asked one, mean over frames, and the least-squares slope of detected
  on asked (1: the mouth opens as far as asked);
- ``lmd_to_real``: mouth LMD of the detected landmarks against the reference crops' detected ones (the
  benchmark's ``lmd_mouth`` less the codec), and ``asked_to_real``: of the asked landmarks themselves
  against the same (what a renderer that drew exactly what it is asked would score);
- the same for the pipeline with the asked jaw and mouth motion scaled by ``--scale`` before rendering
  (``pipeline-scaled``): whether drawing the mouth as far as asked would bring it closer to the real one.

Writes ``render_fidelity.json`` (machine, date, load, the stages' steps, per-clip values).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_pipeline_quality import load, mean_ci, run_stamp
from bench_unseen_identities import DEFAULT_WORK, PROTOCOL
from timing import write_result

PARTS = {"val": "s1 held out (trained speaker)", "test": "s4 (never trained on)"}


def opening_fit(drawn: np.ndarray, asked: np.ndarray) -> tuple[float, float]:
    """(mean of drawn - asked, least-squares slope of drawn on asked) of the mouth opening over the frames
    where both have landmarks."""
    from talkface.core.face68 import mouth_opening

    a, b = mouth_opening(asked), mouth_opening(drawn)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0:
        return float("nan"), float("nan")
    return float(np.mean(b[ok] - a[ok])), float(np.polyfit(a[ok], b[ok], 1)[0])


def scaled_motion(asked: np.ndarray, identity_px: np.ndarray, scale: float) -> np.ndarray:
    """``asked`` with the jaw and mouth points' displacement from the identity's scaled by ``scale``."""
    from talkface.models.retarget import SPEECH_POINTS

    out = np.array(asked, np.float32)
    out[:, SPEECH_POINTS] = identity_px[SPEECH_POINTS] + np.float32(scale) * (
        asked[:, SPEECH_POINTS] - identity_px[SPEECH_POINTS])
    return out


def measure(data: Path, runs: Path, scale: float) -> dict[str, Any]:
    from talkface.core.face68 import lmd
    from talkface.core.landmarks.base import get_landmark_backend
    from talkface.generation.generator import (
        clip_inputs,
        landmarks_from_features,
        load_generator,
        render_frames,
    )
    from talkface.generation.warp import warp_frames
    from talkface.store.dataset import Dataset

    ds = Dataset.open(data)
    gen = load_generator(runs, device="cpu", data=data)
    if gen.size != ds.crop_size:
        raise SystemExit(f"the texture stage draws {gen.size} px, the dataset's crops are {ds.crop_size} px: "
                         "this benchmark compares them unscaled")
    detector = get_landmark_backend("dlib")
    out: dict[str, Any] = {}
    for part in PARTS:
        rows: dict[str, dict[str, dict[str, float]]] = {}
        for cid in sorted(ds.parts(PROTOCOL)[part]):
            clip = clip_inputs(ds, cid)
            feats = gen.features.compute(clip.audio, n_frames=clip.n_frames, fps=clip.fps)
            crop, px = clip.identity_at(gen.size)
            asked = landmarks_from_features(gen, feats, px, blinks=False)
            real = detector.track(clip.reference_frames()).points
            asked_to_real = lmd(asked, real)  # the same for every method: the rows each carry it
            frames = {
                "pipeline": render_frames(gen, crop, asked, identity_px=px),
                "pipeline-scaled": render_frames(gen, crop, scaled_motion(asked, px, scale), identity_px=px),
                "warp": warp_frames(crop, px, asked),
            }
            for method, stream in frames.items():
                drawn = detector.track(stream).points
                bias, slope = opening_fit(drawn, asked)
                rows.setdefault(method, {})[cid] = {
                    "drawn_vs_asked": lmd(drawn, asked), "opening_bias": bias, "opening_slope": slope,
                    "lmd_to_real": lmd(drawn, real), "asked_to_real": asked_to_real}
            print(part, cid, {m: round(r[cid]["lmd_to_real"], 3) for m, r in rows.items()}, flush=True)
        keys = ("drawn_vs_asked", "opening_bias", "opening_slope", "lmd_to_real", "asked_to_real")
        out[part] = {"methods": {m: {k: mean_ci(np.array([v[k] for v in r.values()])) for k in keys}
                                 for m, r in rows.items()},
                     "per_clip": rows}
    out["checkpoints"] = {name: {k: run.get(k) for k in ("step", "sha256", "path")}
                          for name, run in gen.provenance["checkpoints"].items()}
    out["composite"] = gen.provenance.get("composite")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help="bench_unseen_identities.py's --work folder (full-s1-to-s4/data and runs in it; "
                    f"default: its default, {DEFAULT_WORK})")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--scale", type=float, default=1.3,
                    help="the jaw and mouth motion scaled by this for the pipeline-scaled row")
    args = ap.parse_args(argv)
    data, runs = args.work / "full-s1-to-s4" / "data", args.work / "full-s1-to-s4" / "runs"
    for path in (data, runs):
        if not path.exists():
            ap.error(f"{path} is missing: run bench_unseen_identities.py --work {args.work} first")
    started, load_start, t0 = dt.datetime.now(dt.timezone.utc), load(), time.perf_counter()
    measured = measure(data, runs, args.scale)
    record = {
        "benchmark": "render_fidelity",
        "what": ("the stages' target landmarks (no blinks) rendered by the trained pipeline and by warp, no "
                 "codec; dlib's landmarks of the rendered frames against the asked landmarks and against the "
                 "reference crops' dlib landmarks; mouth LMD (48-67, centroid-aligned per frame, crop px), "
                 "mouth opening = inner-lip gap / mouth width"),
        "protocol": f"{PROTOCOL}: stages trained on s1; val = s1 held out, test = s4 (never trained on); "
                    "identity image from another clip of the same speaker",
        "parts": PARTS,
        "scale": args.scale,
        **measured,
        **run_stamp(started, load_start, t0),
    }
    write_result(args.out, "render_fidelity.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
