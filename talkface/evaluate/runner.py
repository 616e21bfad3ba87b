"""``talkface evaluate``: pair generated videos with a prepared reference dataset and score them.

Pairing: ``--generated`` holds ``<clip_id>.mp4`` (or .avi/.mov/.mkv) files, or ``<clip_id>/`` folders
of frames (``*.png``/``*.jpg`` in name order); the reference is a prepared dataset (DatasetStore) whose
``ok`` clips give ``crops/<clip_id>.mp4``. Clips present on one side only are listed in the run record
and printed, never silently dropped. Rules, stated once here and in the run record:

- frame rate: generated videos are decoded at the reference clip's rate (nearest frame in time);
- frame count mismatch: both are trimmed to the shorter and the rows carry the flag ``trimmed``;
- size mismatch: generated frames are resized to the reference crop size (OpenCV INTER_AREA when
  shrinking, INTER_CUBIC when enlarging) and flagged ``resized``; metrics run at the reference size;
- landmarks: one backend (default dlib HOG + 68 points) on generated and reference frames alike;
- audio: the generated video's own track when it has one, else the reference crop's (flag
  ``reference_audio``); identity image: the reference clip's first frame.

A clip whose video cannot be read becomes one failed row per metric with the reason; the run goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from talkface import __version__
from talkface.evaluate.metrics.base import (
    ClipSample,
    Metric,
    MetricUnavailable,
    available_metrics,
    get_metric_class,
)
from talkface.store.results import ResultsStore
from talkface.utils.progress import make_progress
from talkface.utils.provenance import provenance

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class MetricSpec:
    """A metric to build in each worker: registry name plus its options (picklable)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Metric:
        return get_metric_class(self.name)(**self.options)


@dataclass
class Pairing:
    matched: list[str]
    generated_only: list[str]  # generated videos with no reference clip
    reference_only: list[str]  # reference clips with no generated video

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_matched": len(self.matched),
            "generated_without_reference": self.generated_only,
            "reference_without_generated": self.reference_only,
        }


def find_generated(folder: str | Path) -> dict[str, Path]:
    """clip_id -> video file or frame folder in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--generated {folder} is not a folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            found[p.stem] = p
        elif p.is_dir() and any(q.suffix.lower() in FRAME_SUFFIXES for q in p.iterdir()):
            found[p.name] = p
    return found


def reference_clips(reference: str | Path) -> dict[str, Path]:
    """clip_id -> crop video of every ``ok`` clip in a prepared dataset."""
    from talkface.preprocess.store import DatasetStore

    store = DatasetStore(Path(reference))
    manifest = store.read_manifest()
    if manifest.empty:
        raise FileNotFoundError(f"--reference {reference}: no prepared clips (run `talkface prepare` first)")
    ok = manifest[manifest["status"] == "ok"]["clip_id"].astype(str)
    return {c: store.crop_path(c) for c in sorted(ok) if store.crop_path(c).exists()}


def pair_clips(generated: dict[str, Path], reference: dict[str, Path]) -> Pairing:
    return Pairing(
        matched=sorted(set(generated) & set(reference)),
        generated_only=sorted(set(generated) - set(reference)),
        reference_only=sorted(set(reference) - set(generated)),
    )


def read_generated(path: Path, fps: float | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB from a video file or a folder of frames."""
    from talkface.preprocess.media import MediaError, read_video

    if path.is_dir():
        files = sorted(q for q in path.iterdir() if q.suffix.lower() in FRAME_SUFFIXES)
        frames = []
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise MediaError(f"{f}: unreadable image")
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        if not frames:
            raise MediaError(f"{path}: no frames")
        if len({f.shape for f in frames}) != 1:
            raise MediaError(f"{path}: frames differ in size")
        return np.stack(frames)
    frames = read_video(path, fps=fps)
    if len(frames) == 0:
        raise MediaError(f"{path}: no frames decoded")
    return frames


def resize_frames(frames: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    h, w = size_hw
    if frames.shape[1:3] == (h, w):
        return frames
    shrink = frames.shape[1] * frames.shape[2] > h * w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


# -- worker side ----------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(
    specs: Sequence[MetricSpec], landmark_backend: str, landmark_options: dict[str, Any]
) -> None:
    """Build metrics and the landmark backend once per process; one thread each (the pool is the
    parallelism)."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    cv2.setNumThreads(1)
    metrics = [s.build() for s in specs]
    _WORKER["metrics"] = metrics
    _WORKER["landmarks"] = None
    if any(m.needs & {"landmarks", "ref_landmarks"} for m in metrics):
        from talkface.preprocess.landmarks import get_landmark_backend

        _WORKER["landmarks"] = get_landmark_backend(landmark_backend, **landmark_options)


def _failed_rows(
    method: str, clip_id: str, metrics: Sequence[Metric], error: str, flags: list[str]
) -> list[dict]:
    return [
        {
            "method": method,
            "clip_id": clip_id,
            "metric": m.name,
            "variant": m.variant,
            "value": float("nan"),
            "per_frame": None,
            "error": error,
            "flags": flags,
            "details": {},
            "definition": m.definition(),
        }
        for m in metrics
    ]


def score_clip(method: str, clip_id: str, generated: Path, reference: Path, run_context: dict) -> list[dict]:
    """Score one clip with the worker's metrics; never raises (failures become rows)."""
    from talkface.preprocess.media import probe_video, read_audio, read_video

    metrics: list[Metric] = _WORKER["metrics"]
    for m in metrics:
        m.run_context = run_context
    flags: list[str] = []
    try:
        ref = read_video(reference)
        fps = probe_video(reference).fps
        gen = read_generated(generated, fps=fps if generated.is_file() else None)
    except Exception as exc:  # noqa: BLE001 - a bad clip is a recorded failure
        return _failed_rows(method, clip_id, metrics, f"video: {type(exc).__name__}: {exc}", flags)
    if len(gen) != len(ref):
        flags.append(f"trimmed:{len(gen)}vs{len(ref)}")
        n = min(len(gen), len(ref))
        gen, ref = gen[:n], ref[:n]
    if gen.shape[1:3] != ref.shape[1:3]:
        flags.append(f"resized:{gen.shape[2]}x{gen.shape[1]}->{ref.shape[2]}x{ref.shape[1]}")
        gen = resize_frames(gen, ref.shape[1:3])
    needs = set().union(*(m.needs for m in metrics)) if metrics else set()
    sample = ClipSample(clip_id=clip_id, frames=gen, fps=fps, ref_frames=ref, identity_image=ref[0].copy())
    if needs & {"landmarks", "ref_landmarks"}:
        backend = _WORKER["landmarks"]
        sample.landmarks = backend.track(iter(gen)).points
        sample.ref_landmarks = backend.track(iter(ref)).points
    if "audio" in needs:
        audio = None
        if generated.is_file():
            try:
                audio = read_audio(generated)
            except Exception:  # noqa: BLE001 - no audio track: use the reference's
                audio = None
        if audio is None or audio.size == 0:
            flags.append("reference_audio")
            try:
                audio = read_audio(reference)
            except Exception:  # noqa: BLE001
                audio = None
        sample.audio = audio
    rows = []
    for m in metrics:
        res = m(sample)
        rows.append(
            {
                "method": method,
                "clip_id": clip_id,
                "metric": m.name,
                "variant": m.variant,
                "value": res.value,
                "per_frame": res.per_frame,
                "error": res.error,
                "flags": flags,
                "details": res.details,
                "definition": m.definition(),
            }
        )
    return rows


def _score_job(args: tuple) -> tuple[str, list[dict], int]:
    method, clip_id, gen, ref, ctx = args
    rows = score_clip(method, clip_id, gen, ref, ctx)
    n_frames = max((len(r["per_frame"]) for r in rows if r["per_frame"] is not None), default=0)
    return clip_id, rows, n_frames


# -- main side ------------------------------------------------------------------------------------


@dataclass
class EvaluateConfig:
    generated: Path
    reference: Path
    method: str
    out: Path
    metrics: list[str] | None = None  # None: every metric that can run with the given options
    metric_options: dict[str, Any] = field(default_factory=dict)  # e.g. arcface_model=..., lpips_weights=...
    workers: int = 1
    landmark_backend: str = "dlib"
    landmark_options: dict[str, Any] = field(default_factory=dict)


def resolve_metrics(
    names: Sequence[str] | None, options: dict[str, Any]
) -> tuple[list[MetricSpec], dict[str, str]]:
    """Specs for the requested metrics (``name`` or ``name:variant``) and, for the default set, the
    metrics skipped with their reason. A requested metric that cannot run raises with its message."""
    specs: list[MetricSpec] = []
    skipped: dict[str, str] = {}
    if names:
        for full in names:
            base, _, variant = full.partition(":")
            cls = get_metric_class(base)
            opts = {k: v for k, v in options.items() if k in cls.accepted_options and v is not None}
            if variant:
                if variant not in cls.variants:
                    raise KeyError(
                        f"metric {base!r} has no variant {variant!r}; variants: {sorted(cls.variants)}"
                    )
                opts.update(cls.variants[variant])
            cls(**opts)  # fail now, in the main process, with the metric's own message
            specs.append(MetricSpec(base, opts))
        return specs, skipped
    for cls in available_metrics():
        try:
            cls.from_options(**options)
        except MetricUnavailable as exc:
            skipped[cls.name] = str(exc)
            continue
        specs.append(
            MetricSpec(
                cls.name, {k: v for k, v in options.items() if k in cls.accepted_options and v is not None}
            )
        )
    return specs, skipped


def _jobs(
    cfg: EvaluateConfig, pairing: Pairing, gen: dict[str, Path], ref: dict[str, Path], ctx: dict
) -> Iterator[tuple]:
    for clip_id in pairing.matched:
        yield (cfg.method, clip_id, gen[clip_id], ref[clip_id], ctx)


def run_evaluate(cfg: EvaluateConfig, echo=print) -> dict[str, Any]:
    """Score every matched clip, replace the method's rows in ``out``, rebuild the summary."""
    t0 = time.perf_counter()
    gen = find_generated(cfg.generated)
    ref = reference_clips(cfg.reference)
    pairing = pair_clips(gen, ref)
    if pairing.generated_only:
        echo(
            f"{len(pairing.generated_only)} generated clip(s) have no reference: "
            f"{', '.join(pairing.generated_only)}"
        )
    if pairing.reference_only:
        echo(
            f"{len(pairing.reference_only)} reference clip(s) have no generated video: "
            f"{', '.join(pairing.reference_only[:20])}{' ...' if len(pairing.reference_only) > 20 else ''}"
        )
    if not pairing.matched:
        raise ValueError(
            f"no clip of {cfg.generated} matches a clip of {cfg.reference} (names must be clip ids)"
        )
    specs, skipped = resolve_metrics(cfg.metrics, cfg.metric_options)
    for name, why in skipped.items():
        echo(f"skipping {name}: {why}")
    if not specs:
        raise ValueError("no metric can run with the given options")
    built = [s.build() for s in specs]  # once in the main process: needs, variants, definitions
    detector: dict[str, Any] | None = None
    if any(m.needs & {"landmarks", "ref_landmarks"} for m in built):
        from talkface.preprocess.landmarks import get_landmark_backend

        detector = get_landmark_backend(cfg.landmark_backend, **cfg.landmark_options).settings()
    ref_size = _reference_size(ref[pairing.matched[0]])
    ctx = {
        "resolution": f"reference crop size {ref_size[1]}x{ref_size[0]} (generated frames resized to it)",
        "detector": detector,
    }
    rows: list[dict] = []
    n_frames = 0
    jobs = list(_jobs(cfg, pairing, gen, ref, ctx))
    with make_progress() as progress:
        task = progress.add_task(f"evaluate {cfg.method}", total=len(jobs), info="")
        if cfg.workers <= 1:
            _init_worker(specs, cfg.landmark_backend, cfg.landmark_options)
            for job in jobs:
                clip_id, r, nf = _score_job(job)
                rows += r
                n_frames += nf
                progress.update(task, advance=1, info=clip_id)
        else:
            with ProcessPoolExecutor(
                max_workers=cfg.workers,
                mp_context=mp.get_context("spawn"),  # fork after torch/dlib/rich threads can deadlock
                initializer=_init_worker,
                initargs=(specs, cfg.landmark_backend, cfg.landmark_options),
            ) as pool:
                futures = [pool.submit(_score_job, job) for job in jobs]
                for fut in as_completed(futures):
                    clip_id, r, nf = fut.result()
                    rows += r
                    n_frames += nf
                    progress.update(task, advance=1, info=clip_id)
    elapsed = time.perf_counter() - t0
    failed = sorted({r["clip_id"] for r in rows if r["error"] and r["error"].startswith("video:")})
    flagged = {r["clip_id"]: r["flags"] for r in rows if r["flags"]}
    record = provenance(
        method=cfg.method,
        generated=str(Path(cfg.generated).resolve()),
        reference=str(Path(cfg.reference).resolve()),
        pairing=pairing.as_dict(),
        unreadable_clips=failed,
        flagged_clips=flagged,
        metrics=[f"{m.name}:{m.variant}" for m in built],
        skipped_metrics=skipped,
        rules={
            "frame_count_mismatch": "trim both to the shorter (flag trimmed)",
            "size_mismatch": "resize generated to the reference crop size, INTER_AREA shrinking / "
            "INTER_CUBIC enlarging (flag resized)",
            "landmarks": "same backend on generated and reference frames",
            "audio": "generated video's track, else the reference crop's (flag reference_audio)",
            "identity_image": "first reference frame",
        },
        landmark_detector=detector,
        workers=cfg.workers,
        elapsed_s=round(elapsed, 3),
        frames_scored=n_frames,
        talkface_version=__version__,
    )
    ResultsStore(cfg.out).replace_method(cfg.method, rows, record)
    if failed:
        echo(f"{len(failed)} clip(s) could not be read (recorded as failures): {', '.join(failed)}")
    return record


def _reference_size(path: Path) -> tuple[int, int]:
    from talkface.preprocess.media import probe_video

    info = probe_video(path)
    return info.height, info.width


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))
