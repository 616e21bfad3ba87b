"""Calibrate the blink stage's closure amplitude through the texture stage, on training clips.

The blink stage selects its amplitude on landmarks: the generated eye-point blinks match the real
ones' rate, duration and depth. The texture stage then draws part of a closure only: on 26 held-out
GRID s1 clips the generated videos (eyes and brows, amplitude 1.0) had 27.7 blinks/min where the real
crops had 47.7; driven 1.4x deeper, 39.2 (docs/models.md). So after the texture stage is trained, the
amplitude is chosen again where it is scored: the blink rate that the evaluation's detector (dlib, the
EAR rule of ``blink_rate``) finds in generated frames, against the rate it finds in the real crops of
the same clips. Training clips only (the blink stage needs no speech and the held-out clips stay
unseen); every amplitude renders the same clips with the same seed.

The result goes to ``<blink run>/calibration.json`` with the SHA-256 of the blink and texture weights
it was measured with; generation (:func:`talkface.generation.generator.apply_calibration`) uses it
only while both files are unchanged. The record's reader and writer: :mod:`talkface.store.blink_calibration`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from talkface.store.blink_calibration import write_calibration

AMPLITUDES = (1.0, 1.2, 1.4, 1.6, 1.8)
N_CLIPS = 24


def _blink_count(detector: Any, frames: np.ndarray, fps: float) -> int:
    from talkface.core.face68 import detect_blinks, eye_aspect_ratio

    track = detector.track(frames)
    return detect_blinks(eye_aspect_ratio(track.points), fps).count


def calibrate_blink_amplitude(data: str | os.PathLike, checkpoints: str | os.PathLike,
                              protocol: str | None = None, n_clips: int = N_CLIPS,
                              amplitudes: tuple[float, ...] = AMPLITUDES, seed: int = 0,
                              device: str = "auto", gen: Any = None) -> dict[str, Any]:
    """Measure blink rates in generated frames at each amplitude on ``n_clips`` training clips, pick the
    one closest to the real crops' rate (the smaller on ties), write and return the calibration.
    ``gen``: the stages under ``checkpoints`` already loaded (``load_generator``); loaded here if None."""
    from talkface.core.landmarks import get_landmark_backend
    from talkface.generation.generator import clip_inputs, find_run, load_generator
    from talkface.generation.method import TrainedPipeline
    from talkface.store.dataset import Dataset
    from talkface.utils.progress import make_progress

    if gen is None:
        gen = load_generator(checkpoints, device=device, needed_by="blink calibration", data=data)
    ds = Dataset.open(data)
    train = list(ds.parts(protocol).require("train").train)
    step = max(1, len(train) // max(1, n_clips))
    clip_ids = train[::step][:n_clips]
    detector = get_landmark_backend("dlib")
    method = TrainedPipeline()
    real, frames_total = 0, 0
    counts = {a: 0 for a in amplitudes}
    used, failed = [], {}
    progress = make_progress()
    task = progress.add_task("blink calibration", total=len(clip_ids) * (len(amplitudes) + 1), info="")
    with progress:
        for cid in clip_ids:
            try:
                clip = clip_inputs(ds, cid)
                real_frames = np.stack(list(clip.reference_frames()))[: clip.n_frames]
                progress.advance(task)
                real_count = _blink_count(detector, real_frames, clip.fps)
                per_amp = {}
                for amp in amplitudes:
                    gen.blink_model.config.amplitude = float(amp)
                    frames = np.stack(list(method.frames(gen, clip, seed)))
                    per_amp[amp] = _blink_count(detector, frames, clip.fps)
                    progress.update(task, advance=1, info=f"{cid} x{amp:g}")
            except (OSError, ValueError) as exc:  # a broken clip is recorded and skipped
                failed[cid] = str(exc)
                continue
            real += real_count
            frames_total += clip.n_frames
            for amp, c in per_amp.items():
                counts[amp] += c
            used.append(cid)
    if not used:
        raise ValueError(f"blink calibration: no training clip could be rendered ({failed})")
    minutes = frames_total / ds.fps / 60.0
    rates = {f"{a:g}": counts[a] / minutes for a in amplitudes}
    real_rate = real / minutes
    best = min(amplitudes, key=lambda a: (abs(counts[a] / minutes - real_rate), a))
    blink_ckpt = gen.provenance["checkpoints"]["blinks"]
    texture_ckpt = gen.provenance["checkpoints"]["texture"]
    record = {
        "amplitude": float(best), "rule": "amplitude whose generated-frame blink rate is closest to the "
        "real crops' on the same training clips (smaller on ties)",
        "real_blinks_per_min": real_rate, "generated_blinks_per_min": rates, "clips": used,
        "failed": failed, "minutes": minutes, "seed": seed, "protocol": ds.parts(protocol).protocol,
        "detector": detector.settings(), "blink_rule": "blink_rate:ear-adaptive0.75-min2",
        "blinks_sha256": blink_ckpt["sha256"], "texture_sha256": texture_ckpt["sha256"],
        "blink_stage_amplitude": gen.provenance.get("blink_amplitude", {}).get("checkpoint"),
    }
    write_calibration(find_run(checkpoints, "blinks").out_dir, record)
    return record
