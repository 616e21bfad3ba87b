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
only while both files are unchanged. A calibration that found no blinks (none in the real crops, or none
in the generated frames at the amplitude it would choose) measured nothing: its record says so
(``applicable`` False, ``why``) and it is not applied. The record's reader and writer:
:mod:`talkface.store.blink_calibration`.

Time: with a ``deadline`` (``train pipeline --budget``) the clips are timed as they render. A clip is
started only when all its renders (the real crops' detection and one per amplitude) fit in the time
left by the slowest render timed so far (``first_render_s`` before any), and a render only when it fits;
a clip cut short is dropped, since every amplitude must be measured on the same clips.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from talkface.models.blinks import HOLD_FRAMES
from talkface.store.blink_calibration import write_calibration

AMPLITUDES = (1.0, 1.2, 1.4, 1.6, 1.8)
N_CLIPS = 24
#: A rate within this fraction of the real one counts as matched: 24 clips of 3 s hold about 50 blinks, so
#: a rate's Poisson error is about 14%, and rates 25% apart are within two of those.
RATE_TOLERANCE = 0.25
CHOICE_RULE = (f"the smallest amplitude whose generated-frame blink rate is within {RATE_TOLERANCE:.0%} of "
               "the real crops' on the same training clips (a deeper closure costs pixels wherever a blink "
               "falls at another moment than the real one), else the one whose rate is closest (smaller on "
               "ties)")


def choose_amplitude(rates: dict[float, float], real_rate: float, tolerance: float = RATE_TOLERANCE) -> float:
    """The calibration's choice (:data:`CHOICE_RULE`) from blinks/min in generated frames per amplitude
    and the real crops' blinks/min."""
    matched = [a for a, r in rates.items() if real_rate > 0 and abs(r / real_rate - 1) <= tolerance]
    if matched:
        return min(matched)
    return min(rates, key=lambda a: (abs(rates[a] - real_rate), a))


class RenderClock:
    """Whether the calibration's next clip, and next render, fit before ``deadline`` on ``clock``.

    A clip is ``renders`` renders; ``render_s`` is the slowest render timed so far, or ``first_render_s``
    before any has been timed. No deadline: everything fits.
    """

    def __init__(self, deadline: float | None, clock: Callable[[], float], renders: int,
                 first_render_s: float) -> None:
        self.deadline, self.clock, self.renders = deadline, clock, renders
        self.render_s, self.timed = first_render_s, 0

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - self.clock()

    def clip_fits(self) -> bool:
        return self.left() >= self.renders * self.render_s

    def render_fits(self) -> bool:
        return self.left() >= self.render_s

    @contextlib.contextmanager
    def render(self) -> Iterator[None]:
        started = self.clock()
        yield
        took = self.clock() - started
        self.render_s = took if self.timed == 0 else max(self.render_s, took)
        self.timed += 1


class _OutOfTime(Exception):
    """The next render of a clip does not fit: the clip is dropped and the calibration ends."""


def verdict(real_rate: float, rates: dict[str, float], best: float) -> str | None:
    """Why a calibration must not be applied (it found no blinks to match), or None when it may be."""
    if real_rate <= 0:
        return "no blinks in the real crops of these clips: there is no rate to match"
    if all(r <= 0 for r in rates.values()):
        tried = sorted(float(a) for a in rates)
        return (f"no blinks in the generated frames at any amplitude (x{tried[0]:g} to x{tried[-1]:g}) "
                f"against {real_rate:.1f}/min in the real crops")
    if rates[f"{best:g}"] <= 0:
        return (f"the chosen amplitude, x{best:g}, gives 0.0 blinks/min in the generated frames against "
                f"{real_rate:.1f}/min in the real crops")
    return None


def _blink_count(detector: Any, frames: np.ndarray, fps: float) -> int:
    from talkface.core.face68 import detect_blinks, eye_aspect_ratio

    track = detector.track(frames)
    return detect_blinks(eye_aspect_ratio(track.points), fps).count


def calibrate_blink_amplitude(data: str | os.PathLike, checkpoints: str | os.PathLike,
                              protocol: str | None = None, n_clips: int = N_CLIPS,
                              amplitudes: tuple[float, ...] = AMPLITUDES, seed: int = 0,
                              device: str = "auto", gen: Any = None, deadline: float | None = None,
                              clock: Callable[[], float] = time.monotonic,
                              first_render_s: float = 1.25) -> dict[str, Any] | None:
    """Measure blink rates in generated frames at each amplitude on ``n_clips`` training clips (fewer when
    ``deadline`` comes first), pick one by :data:`CHOICE_RULE`, write
    and return the calibration; None when not one clip fitted before ``deadline``.
    ``gen``: the stages under ``checkpoints`` already loaded (``load_generator``); loaded here if None."""
    from talkface.core.landmarks import get_landmark_backend
    from talkface.generation.generator import clip_inputs, find_run, load_generator
    from talkface.generation.method import TrainedPipeline, clip_seed
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
    timer = RenderClock(deadline, clock, len(amplitudes) + 1, first_render_s)
    started, stopped_by = clock(), None

    def next_render() -> contextlib.AbstractContextManager[None]:
        if not timer.render_fits():
            raise _OutOfTime()
        return timer.render()

    progress = make_progress()
    task = progress.add_task("blink calibration", total=len(clip_ids) * (len(amplitudes) + 1), info="")
    with progress:
        for cid in clip_ids:
            if not timer.clip_fits():
                stopped_by = "time"
                break
            try:
                with next_render():
                    clip = clip_inputs(ds, cid)
                    real_frames = np.stack(list(clip.reference_frames()))[: clip.n_frames]
                    real_count = _blink_count(detector, real_frames, clip.fps)
                progress.advance(task)
                per_amp = {}
                for amp in amplitudes:
                    with next_render():
                        gen.blink_model.config.amplitude = float(amp)
                        frames = np.stack(list(method.frames(gen, clip, clip_seed(seed, cid))))
                        per_amp[amp] = _blink_count(detector, frames, clip.fps)
                    progress.update(task, advance=1, info=f"{cid} x{amp:g}")
            except _OutOfTime:  # a clip cut short is dropped: amplitudes compare on the same clips
                stopped_by = "time"
                break
            except (OSError, ValueError) as exc:  # a broken clip is recorded and skipped
                failed[cid] = str(exc)
                continue
            real += real_count
            frames_total += clip.n_frames
            for amp, c in per_amp.items():
                counts[amp] += c
            used.append(cid)
    if not used and stopped_by == "time":
        return None
    if not used:
        raise ValueError(f"blink calibration: no training clip could be rendered ({failed})")
    minutes = frames_total / ds.fps / 60.0
    per_amplitude = {a: counts[a] / minutes for a in amplitudes}
    rates = {f"{a:g}": r for a, r in per_amplitude.items()}
    real_rate = real / minutes
    best = choose_amplitude(per_amplitude, real_rate)
    why = verdict(real_rate, rates, best)
    blink_ckpt = gen.provenance["checkpoints"]["blinks"]
    texture_ckpt = gen.provenance["checkpoints"]["texture"]
    record = {
        "amplitude": float(best), "rule": CHOICE_RULE,
        "real_blinks_per_min": real_rate, "generated_blinks_per_min": rates, "clips": used,
        "failed": failed, "minutes": minutes, "seed": seed, "protocol": ds.parts(protocol).protocol,
        "detector": detector.settings(), "blink_rule": "blink_rate:ear-adaptive0.75-min2",
        "blinks_sha256": blink_ckpt["sha256"], "texture_sha256": texture_ckpt["sha256"],
        "blink_stage_amplitude": gen.provenance.get("blink_amplitude", {}).get("checkpoint"),
        # the frames were composed by this rule; both rules take the eyes from the texture stage
        "composite": getattr(gen, "composite", None),
        "hold_frames": HOLD_FRAMES,  # each generated closure held this long (blinks.hold_closures)
        "applicable": why is None, "why": why, "clips_asked": len(clip_ids), "stopped_by": stopped_by,
        "seconds": round(clock() - started, 3),
    }
    write_calibration(find_run(checkpoints, "blinks").out_dir, record)
    return record
