"""``talkface evaluate``: pair generated videos with a prepared dataset's clips and score them.

Pairing: ``--generated`` holds ``<clip_id>.mp4`` (or .avi/.mov/.mkv/.webm) files, or ``<clip_id>/``
folders of frames (``*.png``/``*.jpg`` in name order); the reference is a prepared dataset read through
:mod:`talkface.store.dataset`: its usable clips (``is_usable``, the rule training and generation use),
optionally only one part (``--part test``) of a split protocol, give ``crops/<clip_id>.mp4``. Clips
present on one side only are listed in the run record and printed, never silently dropped. Rules,
stated once here, in :data:`RULES` and in every run record:

- frame rate: generated videos are decoded at the reference clip's rate (nearest frame in time);
- frame count: a generated clip more than one frame shorter or longer than its reference is a recorded
  failure of that clip (every metric's row carries the error), so a method never gains by dropping
  frames; a one-frame difference is trimmed. ``trim=True`` (``--trim``) trims every mismatch to the
  shorter instead; trimmed rows carry the flag ``trimmed:<generated>vs<reference>`` and the summary
  says how many clips were trimmed and by how much;
- size mismatch: generated frames are resized to the reference crop size (OpenCV INTER_AREA when
  shrinking, INTER_CUBIC when enlarging) and flagged ``resized``; metrics run at the reference size;
- landmarks: one backend (default dlib HOG + 68 points) on generated and reference frames alike,
  detected once per clip and side;
- audio: the generated video's own track when it has one, else the reference crop's (flag
  ``reference_audio``);
- identity image: the image generation was given (:mod:`talkface.store.identity_source`, as the
  generated folder's generation.json says: by default a frame of another clip of the same speaker);
  its landmarks are the reference's when it is a frame of the scored clip, else detected on it.

A clip whose video cannot be read becomes one failed row per metric with the reason; the run goes on.
Results are written only through :class:`talkface.store.results.ResultsStore`, with the run's
:class:`~talkface.store.results.Protocol` in the run record, by the process that called
:func:`run_evaluate`; the clips are scored by :func:`score_clip` in that process, in a process pool
(``workers`` > 1) or as Ray tasks (``executor="ray"``, :mod:`talkface.core.executors`), which give
the same rows. Reference landmarks are cached beside the results
(:mod:`talkface.evaluate.reference_cache`): a second method scored against the same reference clips
reuses them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from talkface import __version__
from talkface.evaluate.metrics.base import (
    LANDMARK_NEEDS,
    NAME_MODULES,
    ClipSample,
    Metric,
    MetricResult,
    MetricUnavailable,
    available_metrics,
    get_metric_class,
    metric_import_errors,
    metric_options,
)
from talkface.evaluate.reference_cache import ReferenceLandmarkCache
from talkface.store.results import Protocol, ResultRow, ResultsStore, reference_id, trim_flag
from talkface.utils.progress import make_progress
from talkface.utils.provenance import provenance

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Frames a generated clip may differ from its reference by and still be scored (trimmed) without --trim.
FRAME_TOLERANCE = 1
#: Option-bag keys that name a model file, with the flag that sets each. A metric accepting one of
#: these that the user gave is asked for by that file: if it cannot run, that is an error.
MODEL_OPTIONS: dict[str, str] = {
    "arcface_model": "--arcface-model",
    "lpips_weights": "--lpips-weights",
    "lpips_backbone": "--lpips-backbone",
    "syncnet_model": "--syncnet-model",
}
RULES = {
    "frame_count_mismatch": (
        f"more than {FRAME_TOLERANCE} frame apart: the clip fails (error 'frame count: ...') unless "
        f"--trim; up to {FRAME_TOLERANCE} apart, or with --trim: both trimmed to the shorter "
        "(flag trimmed:<gen>vs<ref>)"
    ),
    "size_mismatch": "resize generated to the reference crop size, INTER_AREA shrinking / "
    "INTER_CUBIC enlarging (flag resized)",
    "landmarks": "same backend on generated and reference frames, once per clip and side; reference "
    "landmarks cached beside the results (cache/reference_landmarks), keyed by the reference file's "
    "SHA-256, frames scored and the backend's settings",
    "audio": "generated video's track, else the reference crop's (flag reference_audio)",
    "identity_image": "the image generation took the identity from (talkface.store.identity_source: the "
    "generated folder's generation.json says other-clip or same-clip, else --identity-from; the frame by "
    "choose_identity_frame on the prepared landmarks of that clip: eyes open, closed neutral mouth)",
    "usable_reference": "talkface.store.dataset.is_usable, as training and generation",
}


def _needs_landmarks(metrics: Sequence[Metric]) -> bool:
    return any(m.needs & LANDMARK_NEEDS for m in metrics)


def _needs_identity(metrics: Sequence[Metric]) -> bool:
    return any("identity_image" in m.needs for m in metrics)


def generated_identity_from(generated: Path, default: str) -> str:
    """Where the generated videos' identity images came from: their generation.json's ``identity_from``;
    ``same-clip`` for a record written before the identity protocol (it has ``identity_frame`` only);
    ``default`` for videos with no record (made by another tool)."""
    from talkface.store.generated_videos import read_record_strict

    record = read_record_strict(generated) if Path(generated).is_dir() else None
    if record is None:
        return default
    return str(record.get("identity_from") or "same-clip")


def identity_job(ref: Reference, clip_id: str, identity_from: str) -> tuple[Path, int] | None:
    """The identity image of ``clip_id`` as (crop video, frame), from the prepared landmarks; None when
    its clip has no landmarks (the identity metrics then use the clip's own detected frame)."""
    from talkface.core.face68 import NoFaceError
    from talkface.store.identity_source import identity_source

    try:
        source = identity_source(ref.dataset, clip_id, identity_from)
    except (NoFaceError, OSError, KeyError):
        return None
    return Path(ref.dataset.crop_path(source.clip_id)), source.frame


class EvaluateError(ValueError):
    """A run that cannot start (no clip matches, no metric can run); ``str()`` is one sentence."""


@dataclass(frozen=True)
class MetricSpec:
    """A metric to build in each worker: registry name plus its options (picklable)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Metric:
        return get_metric_class(self.name)(**self.options)


# -- the two sides -------------------------------------------------------------------------------


@dataclass
class Reference:
    """The reference side of a run: usable clips of a prepared dataset (one part, or all)."""

    path: Path
    dataset: Any  # talkface.store.dataset.Dataset
    clips: dict[str, Path]  # clip id -> crop video
    excluded: dict[str, str]  # clip id in the dataset -> why it is not a reference here
    protocol: str | None
    part: str | None  # as asked for (None: every usable clip)
    part_of: dict[str, str]  # clip id -> its part in ``protocol``

    def protocol_record(self, scored: Sequence[str], identity_from: str | None = None) -> Protocol:
        """The run's protocol; without ``--part`` the part is the one every scored clip is in, if any."""
        part = self.part
        if part is None:
            parts = {self.part_of.get(c) for c in scored}
            part = parts.pop() if len(parts) == 1 else None
        info = self.dataset.info
        return Protocol(
            dataset=info.corpus,
            protocol=self.protocol,
            part=part,
            crop_size=int(self.dataset.crop_size),
            reference=str(self.path.resolve()),
            reference_id=reference_id(scored, _reference_info(info)),
            identity_from=identity_from,
        )


def open_reference(data: str | Path, protocol: str | None = None, part: str | None = None) -> Reference:
    """The usable clips of the prepared dataset ``data`` (those of ``part`` when given) and their crops.

    Raises :class:`~talkface.store.dataset.DatasetError` when ``data`` is not a prepared dataset, lacks
    the protocol, or has no usable clip in ``part`` (:meth:`~talkface.store.dataset.Parts.require`: the
    sentence every command gives, naming the parts that hold clips and the ``--part`` to pass), and
    :class:`EvaluateError` when it has no usable clip with a crop (in that part).
    """
    from talkface.store.dataset import PARTS, Dataset, is_usable

    if part is not None and part not in PARTS:
        raise EvaluateError(f"--part {part!r}: a part is one of {', '.join(PARTS)}")
    ds = Dataset.open(data)
    part_of: dict[str, str] = {}
    if protocol is not None or part is not None or ds.info.default_protocol:
        parts = ds.parts(protocol)  # the default protocol when None; DatasetError naming those held
        if part is not None:
            parts.require(part)  # DatasetError naming the parts that hold clips and the --part to pass
        protocol = parts.protocol
        part_of = {c: p for p, ids in parts.as_dict().items() for c in ids}
    clips: dict[str, Path] = {}
    excluded: dict[str, str] = {}
    for rec in ds.records():
        cid = rec.clip_id
        if not is_usable(rec):
            excluded[cid] = f"status {rec.status}, not usable"
        elif part is not None and part_of.get(cid) != part:
            excluded[cid] = f"in part {part_of.get(cid)!r} of {protocol!r}, not {part!r}"
        elif not ds.crop_path(cid).exists():
            excluded[cid] = f"its crop {ds.crop_path(cid)} is missing"
        else:
            clips[cid] = ds.crop_path(cid)
    if not clips:
        where = f" in part {part!r} of protocol {protocol!r}" if part else ""
        raise EvaluateError(f"{data} has no usable clip with a crop{where}")
    return Reference(Path(data), ds, dict(sorted(clips.items())), excluded, protocol, part, part_of)


def _reference_info(info: Any) -> dict[str, Any]:
    """The dataset information that identifies its crops. Protocol bookkeeping and dates are left out,
    so adding a protocol to a store does not change the reference id of results measured on it."""
    return {k: v for k, v in info.to_dict().items() if k not in _NOT_IDENTIFYING}


_NOT_IDENTIFYING = frozenset({"protocols", "default_protocol", "created", "updated"})


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


@dataclass
class Pairing:
    matched: list[str]
    generated_only: list[str]  # generated videos with no reference clip
    reference_only: list[str]  # reference clips with no generated video
    excluded: dict[str, str] = field(default_factory=dict)  # generated_only clips the dataset has, and why

    @classmethod
    def of(cls, generated: Mapping[str, Path], reference: Reference) -> Pairing:
        gen, ref = set(generated), set(reference.clips)
        only = sorted(gen - ref)
        return cls(
            matched=sorted(gen & ref),
            generated_only=only,
            reference_only=sorted(ref - gen),
            excluded={c: reference.excluded[c] for c in only if c in reference.excluded},
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_matched": len(self.matched),
            "generated_without_reference": self.generated_only,
            "generated_reference_excluded": self.excluded,
            "reference_without_generated": self.reference_only,
        }


def read_generated(path: Path, fps: float | None = None, threads: int | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB from a video file or a folder of frames (``threads``: video decoder
    threads, default FFmpeg's)."""
    from talkface.core.media import MediaError, read_video

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
    frames = read_video(path, fps=fps, threads=threads)
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


@dataclass(frozen=True)
class WorkerSetup:
    """What a scoring process builds its metrics and landmark backend from (picklable, sent once)."""

    specs: tuple[MetricSpec, ...]
    landmark_backend: str = "dlib"
    landmark_options: dict[str, Any] = field(default_factory=dict)
    run_context: dict[str, Any] = field(default_factory=dict)
    cache: ReferenceLandmarkCache | None = None  # read here; the run's own process writes it
    #: video decoder threads: 1 when several processes score at once (FFmpeg's slice threads on every
    #: core in each of them oversubscribe the cores), None (FFmpeg's default) for a lone process
    decode_threads: int | None = None


def _init_worker(setup: WorkerSetup, metrics: Sequence[Metric] | None = None) -> None:
    """Set up a scoring process once: its metrics (built here unless given), the landmark backend
    when a metric needs landmarks, and one thread each (the pool is the parallelism)."""
    cv2.setNumThreads(1)
    metrics = list(metrics) if metrics is not None else [s.build() for s in setup.specs]
    if "torch" in sys.modules:  # only a metric with a network imports torch (1.5 s a worker otherwise)
        sys.modules["torch"].set_num_threads(1)
    for m in metrics:
        m.run_context = setup.run_context
    _WORKER.pop("setup", None)  # score_in_worker's record of what this process was set up for
    _WORKER["metrics"] = metrics
    _WORKER["landmarks"] = None
    _WORKER["cache"] = setup.cache
    _WORKER["decode_threads"] = setup.decode_threads
    if _needs_landmarks(metrics):
        from talkface.core.landmarks import get_landmark_backend

        warm = _WORKER.get("warm_landmarks")  # built by _warm_worker when the pool started
        if warm is not None and warm[0] == _landmark_key(setup.landmark_backend, setup.landmark_options):
            _WORKER["landmarks"] = warm[1]
        else:
            _WORKER["landmarks"] = get_landmark_backend(setup.landmark_backend, **setup.landmark_options)


def clip_rows(
    method: str,
    clip_id: str,
    metrics: Sequence[Metric],
    flags: Sequence[str],
    results: Sequence[MetricResult] | None = None,
    error: str | None = None,
    **details: Any,
) -> list[ResultRow]:
    """One row per metric: from its result, or (``error``, ``details``) a failure of the whole clip."""
    if results is None:
        results = [MetricResult.failed(error or "not scored", **details)] * len(metrics)
    return [
        ResultRow(
            method=method,
            clip_id=clip_id,
            metric=m.name,
            variant=m.variant,
            value=r.value,
            per_frame=r.per_frame,
            error=r.error,
            flags=list(flags),
            details=r.details,
            definition=m.definition(),
        )
        for m, r in zip(metrics, results, strict=True)
    ]


@dataclass(frozen=True)
class ClipJob:
    method: str
    clip_id: str
    generated: Path
    reference: Path
    trim: bool = False
    identity: tuple[Path, int] | None = None  # the identity image: (crop video, frame index)


@dataclass
class ClipScore:
    """What scoring one clip gives back: its rows, and the reference landmarks it detected (for the
    run's own process to cache) or whether it found them in the cache."""

    rows: list[ResultRow]
    cache_key: str | None = None  # the reference-landmark cache's key text, when landmarks were used
    new_landmarks: np.ndarray | None = None  # detected here (a miss): to be written to the cache
    cache_hit: bool = False


def score_clip(job: ClipJob) -> ClipScore:
    """Score one clip with the worker's metrics; never raises (failures become rows)."""
    from talkface.core.media import probe_video, read_audio, read_video

    metrics: list[Metric] = _WORKER["metrics"]
    flags: list[str] = []

    def failed(error: str, **details: Any) -> ClipScore:
        return ClipScore(clip_rows(job.method, job.clip_id, metrics, flags, error=error, **details))

    try:
        threads = _WORKER.get("decode_threads")
        ref = read_video(job.reference, threads=threads)
        fps = probe_video(job.reference).fps
        gen = read_generated(job.generated, fps=fps if job.generated.is_file() else None, threads=threads)
    except Exception as exc:  # noqa: BLE001 - a bad clip is a recorded failure
        return failed(f"video: {type(exc).__name__}: {exc}")
    if len(gen) != len(ref):
        if abs(len(gen) - len(ref)) > FRAME_TOLERANCE and not job.trim:
            return failed(
                f"frame count: generated {len(gen)} frames, reference {len(ref)} (more than "
                f"{FRAME_TOLERANCE} apart; --trim scores the overlap)",
                generated_frames=len(gen),
                reference_frames=len(ref),
            )
        flags.append(trim_flag(len(gen), len(ref)))
        n = min(len(gen), len(ref))
        gen, ref = gen[:n], ref[:n]
    if gen.shape[1:3] != ref.shape[1:3]:
        flags.append(f"resized:{gen.shape[2]}x{gen.shape[1]}->{ref.shape[2]}x{ref.shape[1]}")
        gen = resize_frames(gen, ref.shape[1:3])
    needs = set().union(*(m.needs for m in metrics)) if metrics else set()
    sample = ClipSample(
        clip_id=job.clip_id, frames=gen, fps=fps, ref_frames=ref, identity_image=ref[0].copy()
    )
    score = ClipScore([])
    if needs & LANDMARK_NEEDS:
        backend = _WORKER["landmarks"]
        sample.landmarks = backend.track(iter(gen)).points
        sample.ref_landmarks, score = _reference_landmarks(backend, job.reference, ref)
        if job.identity is None:  # the clip's own frame chosen on its detected landmarks
            index = identity_frame_index(sample.ref_landmarks)
            sample.identity_image = ref[index].copy()
            sample.extras["identity_landmarks"] = sample.ref_landmarks[index]
    if job.identity is not None and "identity_image" in needs:
        path, index = job.identity
        if Path(path) == Path(job.reference) and index < len(ref):  # its own frame: reuse its landmarks
            sample.identity_image = ref[index].copy()
            if sample.ref_landmarks is not None:
                sample.extras["identity_landmarks"] = sample.ref_landmarks[index]
        else:
            try:
                sample.identity_image = identity_image(job.identity)
            except Exception as exc:  # noqa: BLE001 - a bad clip is a recorded failure
                return failed(f"identity image: {type(exc).__name__}: {exc}")
    if "audio" in needs:
        sample.audio = _audio(job, flags, read_audio)
    score.rows = clip_rows(job.method, job.clip_id, metrics, flags, results=[m(sample) for m in metrics])
    return score


def identity_image(source: tuple[Path, int]) -> np.ndarray:
    """Frame ``index`` of the crop video ``path`` (the identity image generation was given)."""
    from talkface.core.media import iter_frames

    path, index = source
    for i, frame in enumerate(iter_frames(path)):
        if i == index:
            return frame
    raise ValueError(f"{path} has fewer than {index + 1} frames")


def identity_frame_index(ref_landmarks: np.ndarray) -> int:
    """The reference frame identity metrics compare against: the one ``generate --data`` and every
    baseline take the identity from (:func:`talkface.core.face68.choose_identity_frame`), so a
    method is scored against the image it was given; frame 0 when no frame has landmarks."""
    from talkface.core.face68 import choose_identity_frame
    from talkface.core.landmarks.base import NoFaceError

    try:
        return choose_identity_frame(ref_landmarks)
    except NoFaceError:
        return 0


def _reference_landmarks(backend: Any, path: Path, ref: np.ndarray) -> tuple[np.ndarray, ClipScore]:
    """The reference frames' landmarks: from the cache when it holds them, else detected (and handed
    back for the run's process to cache)."""
    cache: ReferenceLandmarkCache | None = _WORKER.get("cache")
    if cache is None:
        return backend.track(iter(ref)).points, ClipScore([])
    try:
        key = cache.key_json(path, len(ref), ref.shape[1:3])
    except OSError:  # the file vanished after decoding: nothing to key on, detect
        return backend.track(iter(ref)).points, ClipScore([])
    points = cache.load(key)
    if points is not None:
        return points, ClipScore([], cache_key=key, cache_hit=True)
    points = backend.track(iter(ref)).points
    return points, ClipScore([], cache_key=key, new_landmarks=points)


def score_in_worker(job: ClipJob, setup: WorkerSetup) -> ClipScore:
    """One clip in a Ray worker: :func:`score_clip` with this worker process's metrics, built on its
    first clip of a run and kept for the next ones."""
    key = repr(setup)
    if _WORKER.get("setup") != key:
        _init_worker(setup)
        _WORKER["setup"] = key
    return score_clip(job)


def _audio(job: ClipJob, flags: list[str], read_audio) -> np.ndarray | None:
    """The generated video's audio track, else the reference crop's (flagged)."""
    audio = None
    if job.generated.is_file():
        try:
            audio = read_audio(job.generated)
        except Exception:  # noqa: BLE001 - no audio track: use the reference's
            audio = None
    if audio is None or audio.size == 0:
        flags.append("reference_audio")
        try:
            audio = read_audio(job.reference)
        except Exception:  # noqa: BLE001
            audio = None
    return audio


# -- main side ------------------------------------------------------------------------------------


@dataclass
class EvaluateConfig:
    generated: Path
    data: Path  # the prepared dataset whose crops are the ground truth
    method: str
    out: Path
    metrics: list[str] | None = None  # None: every metric that can run with the given options
    metric_options: dict[str, Any] = field(default_factory=dict)  # e.g. arcface_model=..., lpips_weights=...
    workers: int = 1
    landmark_backend: str = "dlib"
    landmark_options: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None  # split protocol of the dataset (None: its default)
    part: str | None = None  # train | val | test: only that part's clips are references
    trim: bool = False  # score clips more than one frame off their reference on the overlap
    executor: str = "process"  # process (this process, or a pool of `workers`) | ray (Ray tasks)
    ray_address: str | None = None  # with executor "ray": the cluster to join (None: start one here)
    landmark_cache: bool = True  # reuse reference landmarks cached in out/cache/reference_landmarks
    #: where the identity images came from when the generated folder does not say (no generation.json)
    identity_from: str = "other-clip"


@dataclass
class MetricPlan:
    """The metrics a run computes (built once in the main process) and what it leaves out."""

    specs: list[MetricSpec]
    metrics: list[Metric]
    not_run: dict[str, str]  # default-set metric -> why it cannot run (said once, never an error)
    unused_options: list[str]  # model flags given that no chosen metric uses

    def not_run_line(self) -> str | None:
        """One line naming every metric not run, grouped by reason."""
        if not self.not_run:
            return None
        by_reason: dict[str, list[str]] = {}
        for name, why in sorted(self.not_run.items()):
            by_reason.setdefault(why, []).append(name)
        parts = [f"{', '.join(names)} ({why})" for why, names in by_reason.items()]
        return f"not run: {'; '.join(parts)}. See `talkface metrics list`."


def plan_metrics(names: Sequence[str] | None, options: Mapping[str, Any]) -> MetricPlan:
    """Build the requested metrics (``name`` or ``name:variant``), or by default every metric that can
    run with ``options``.

    A metric is asked for when it is named in ``names`` or when the user gave a model file it uses
    (``MODEL_OPTIONS``); one that is asked for and cannot run raises :class:`MetricUnavailable` with a
    one-line message. Default-set metrics that cannot run are listed in ``not_run`` with the reason.
    """
    given = {k for k in MODEL_OPTIONS if options.get(k) is not None}
    not_run: dict[str, str] = {}
    if names:
        requested = list(names)
    else:
        requested = []
        for cls in available_metrics():
            models = cls.accepted_options & MODEL_OPTIONS.keys()
            if models and not models & given:
                not_run[cls.name] = f"no {' or '.join(MODEL_OPTIONS[k] for k in sorted(models))} given"
                continue
            requested.append(cls.name)
        for module, err in metric_import_errors().items():
            for name in (n for n, m in NAME_MODULES.items() if m == module):
                not_run[name] = f"its module failed to import: {err}"
    specs: list[MetricSpec] = []
    built: list[Metric] = []
    used: set[str] = set()
    for spec in requested:
        cls, opts = metric_options(spec, options, shared=True)
        models = cls.accepted_options & given
        try:
            metric = cls(**opts)
        except MetricUnavailable as exc:
            missing = (cls.accepted_options & MODEL_OPTIONS.keys()) - given
            if models and missing:  # e.g. --lpips-weights without --lpips-backbone
                raise MetricUnavailable(
                    f"{cls.name} (asked for with {_flags(models)}) also needs {_flags(missing)}"
                ) from exc
            if names or models:
                by = f" (asked for with {_flags(models)})" if models else ""
                raise MetricUnavailable(f"{cls.name}{by} cannot run: {first_sentence(exc)}") from exc
            not_run[cls.name] = first_sentence(exc)
            continue
        if any((m.name, m.variant) == (metric.name, metric.variant) for m in built):
            continue  # named twice
        used |= models
        specs.append(MetricSpec(cls.name, opts))
        built.append(metric)
    unused = [MODEL_OPTIONS[k] for k in sorted(given - used)]
    return MetricPlan(specs, built, not_run, unused)


def _warm_worker(landmark_backend: str | None = None, landmark_options: dict[str, Any] | None = None) -> None:
    """What a scoring process does before it knows the run's metrics (they come with its first clip,
    :func:`score_in_worker`): import the metrics, the landmark backends and the video reader, and build
    the run's landmark backend (its model read now, while the parent sets up, not on the first clip;
    measured 0.3 s). A backend that cannot be built here is left to the first clip, which says why."""
    import talkface.core.landmarks.dlib_backend  # noqa: F401
    import talkface.core.media  # noqa: F401
    import talkface.evaluate.metrics  # noqa: F401

    if landmark_backend is None:
        return
    from talkface.core.landmarks import get_landmark_backend

    try:
        backend = get_landmark_backend(landmark_backend, **(landmark_options or {}))
    except Exception:  # noqa: BLE001 - an initializer that raises breaks the whole pool
        return
    _WORKER["warm_landmarks"] = (_landmark_key(landmark_backend, landmark_options or {}), backend)


def _landmark_key(backend: str, options: dict[str, Any]) -> str:
    return repr((backend, sorted(options.items())))


def run_evaluate(cfg: EvaluateConfig, echo=print) -> dict[str, Any]:
    """Score every matched clip, replace the method's rows in ``out``, rebuild the summary.

    Returns the run record (also in ``out/runs/<method>.json``).
    """
    from talkface.core.executors import EXECUTORS, start_process_pool, stop_process_pool

    if cfg.executor not in EXECUTORS:
        raise EvaluateError(f"unknown executor {cfg.executor!r}; choose one of {', '.join(EXECUTORS)}")
    if cfg.ray_address and cfg.executor != "ray":
        raise EvaluateError("a Ray address needs the ray executor (--executor ray)")
    pool = None
    if cfg.executor == "process" and cfg.workers > 1:  # spawned now: their start-up overlaps the set-up
        pool = start_process_pool(cfg.workers - 1, _warm_worker,
                                  (cfg.landmark_backend, dict(cfg.landmark_options)))
    try:
        return _run_evaluate(cfg, echo, pool)
    finally:
        if pool is not None:
            stop_process_pool(pool)  # (after a normal run it has already shut down)


def _run_evaluate(cfg: EvaluateConfig, echo, pool: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    gen = find_generated(cfg.generated)
    ref = open_reference(cfg.data, cfg.protocol, cfg.part)
    pairing = Pairing.of(gen, ref)
    if not pairing.matched:
        _echo_pairing(pairing, echo)
        raise EvaluateError(
            f"no clip of {cfg.generated} matches a usable clip of {cfg.data} (file names must be clip ids)"
        )
    plan = plan_metrics(cfg.metrics, cfg.metric_options)  # before anything else is said: it may fail
    _echo_pairing(pairing, echo)
    if plan.not_run_line():
        echo(plan.not_run_line())
    if plan.unused_options:
        echo(f"not used by the chosen metrics: {', '.join(plan.unused_options)}")
    if not plan.metrics:
        raise EvaluateError("no metric can run with the given options (see `talkface metrics list`)")
    crop = int(ref.dataset.crop_size)
    ctx: dict[str, Any] = {
        "resolution": f"reference crop size {crop}x{crop} (generated frames resized to it)"
    }
    identity_from = generated_identity_from(cfg.generated, cfg.identity_from)
    jobs = [ClipJob(cfg.method, c, gen[c], ref.clips[c], cfg.trim,
                    identity_job(ref, c, identity_from) if _needs_identity(plan.metrics) else None)
            for c in pairing.matched]
    parallel = cfg.executor == "ray" or cfg.workers > 1
    setup = WorkerSetup(tuple(plan.specs), cfg.landmark_backend, dict(cfg.landmark_options), ctx,
                        decode_threads=1 if parallel else None)
    in_process = cfg.executor == "process"
    if in_process:  # this process scores too, with the metrics already built (the pool spawns one fewer)
        _init_worker(setup, metrics=plan.metrics)
        landmarks = _WORKER["landmarks"]
        ctx["detector"] = landmarks.settings() if landmarks is not None else None  # metrics hold ctx
    else:
        ctx["detector"] = _detector_settings(cfg.landmark_backend, cfg.landmark_options, plan.metrics)
        for m in plan.metrics:  # the rows of a clip whose Ray task died are made here
            m.run_context = ctx
    if cfg.landmark_cache and ctx["detector"] is not None:
        setup = replace(setup, cache=ReferenceLandmarkCache.beside(cfg.out, ctx["detector"]))
        if in_process:
            _WORKER["cache"] = setup.cache
    rows: list[ResultRow] = []
    cache_use: dict[str, Any] = {"hits": 0, "detected": 0}
    with make_progress() as progress:
        task = progress.add_task(f"evaluate {cfg.method}", total=len(jobs), info="")

        def collect(score: ClipScore) -> None:
            rows.extend(score.rows)
            if score.cache_key is not None and setup.cache is not None:
                if score.cache_hit:
                    cache_use["hits"] += 1
                else:
                    cache_use["detected"] += 1
                    try:
                        setup.cache.save(score.cache_key, score.new_landmarks)
                    except OSError as exc:  # a cache that cannot be written costs time, not results
                        cache_use.setdefault("write_error", f"{type(exc).__name__}: {exc}")
            progress.update(task, advance=1, info=score.rows[0].clip_id if score.rows else "")

        if cfg.executor == "ray":
            from talkface.core import executors

            def failure(job: ClipJob, message: str) -> ClipScore:  # the task's worker died
                return ClipScore(clip_rows(job.method, job.clip_id, plan.metrics, [], error=message))

            executors.run_ray_tasks(score_in_worker, jobs, (setup,), collect, failure,
                                    address=cfg.ray_address, num_cpus=cfg.workers)
        else:
            from threadpoolctl import threadpool_limits

            from talkface.core.executors import run_process_pool

            # this process scores clips too: one BLAS thread, as its workers start with (an idle
            # OpenBLAS thread spins on the core another worker needs; measured: a quarter of the CPU)
            with threadpool_limits(limits=1):
                run_process_pool(partial(score_in_worker, setup=setup), jobs, collect, max(cfg.workers, 1),
                                 _init_worker, (setup,), in_parent=score_clip, pool=pool)
    cache = None
    if setup.cache is not None:
        cache = {"folder": str(setup.cache.folder.resolve()), **cache_use}
        if "write_error" in cache_use:
            echo(f"note: reference landmarks not cached in {setup.cache.folder} ({cache_use['write_error']})")
    record = _run_record(cfg, ref, pairing, plan, rows, ctx["detector"], time.perf_counter() - t0, cache,
                         identity_from)
    ResultsStore(cfg.out).replace_method(cfg.method, rows, record)
    _echo_outcome(record, echo)
    return record


def _detector_settings(
    backend: str, options: dict[str, Any], metrics: Sequence[Metric]
) -> dict[str, Any] | None:
    """The settings of the workers' landmark detector (built here only to read them), if one is used."""
    if not _needs_landmarks(metrics):
        return None
    from talkface.core.landmarks import get_landmark_backend

    return get_landmark_backend(backend, **options).settings()


def _run_record(
    cfg: EvaluateConfig,
    ref: Reference,
    pairing: Pairing,
    plan: MetricPlan,
    rows: list[ResultRow],
    detector: dict[str, Any] | None,
    elapsed: float,
    cache: dict[str, Any] | None = None,
    identity_from: str | None = None,
) -> dict[str, Any]:
    by_clip: dict[str, ResultRow] = {}
    for r in rows:
        by_clip.setdefault(r.clip_id, r)
    unreadable = sorted(c for c, r in by_clip.items() if (r.error or "").startswith("video:"))
    frame_count = {
        c: {"generated": r.details["generated_frames"], "reference": r.details["reference_frames"]}
        for c, r in sorted(by_clip.items())
        if (r.error or "").startswith("frame count:")
    }
    frames: dict[str, int] = {}
    for r in rows:
        if r.per_frame is not None:
            frames[r.clip_id] = max(frames.get(r.clip_id, 0), len(r.per_frame))
    return provenance(
        method=cfg.method,
        protocol=ref.protocol_record(pairing.matched, identity_from).to_dict(),
        generated=str(Path(cfg.generated).resolve()),
        reference=str(Path(cfg.data).resolve()),
        pairing=pairing.as_dict(),
        unreadable_clips=unreadable,
        frame_count_failures=frame_count,
        flagged_clips={c: r.flags for c, r in sorted(by_clip.items()) if r.flags},
        metrics=[f"{m.name}:{m.variant}" for m in plan.metrics],
        not_run_metrics=plan.not_run,
        options={"trim": cfg.trim, "frame_tolerance": FRAME_TOLERANCE, "workers": cfg.workers,
                 "executor": cfg.executor, "ray_address": cfg.ray_address,
                 "landmark_cache": cfg.landmark_cache},
        rules=RULES,
        landmark_detector=detector,
        reference_landmark_cache=cache,
        workers=cfg.workers,
        elapsed_s=round(elapsed, 3),
        frames_scored=sum(frames.values()),
        talkface_version=__version__,
    )


def _echo_pairing(pairing: Pairing, echo) -> None:
    if pairing.generated_only:
        why = [f"{c} ({pairing.excluded[c]})" if c in pairing.excluded else c for c in pairing.generated_only]
        echo(f"{len(why)} generated clip(s) have no usable reference: {_listing(why)}")
    if pairing.reference_only:
        echo(f"{len(pairing.reference_only)} reference clip(s) have no generated video: "
             f"{_listing(pairing.reference_only)}")


def _echo_outcome(record: dict[str, Any], echo) -> None:
    if record["unreadable_clips"]:
        bad = record["unreadable_clips"]
        echo(f"{len(bad)} clip(s) could not be read (recorded as failures): {_listing(bad)}")
    if record["frame_count_failures"]:
        counts = record["frame_count_failures"]
        bad = [f"{c} ({n['generated']} vs {n['reference']})" for c, n in counts.items()]
        echo(
            f"{len(bad)} clip(s) differ from their reference by more than {FRAME_TOLERANCE} frame "
            f"(recorded as failures; --trim scores the overlap): {_listing(bad)}"
        )


def _listing(items: Sequence[str], most: int = 20) -> str:
    return ", ".join(items[:most]) + (f" ... (+{len(items) - most} more)" if len(items) > most else "")


def _flags(options: set[str]) -> str:
    return ", ".join(MODEL_OPTIONS[k] for k in sorted(options))


def first_sentence(exc: BaseException | str) -> str:
    """The message's first sentence on one line (a metric's message goes on to say where to get its
    model; the user who named a file needs to know what is wrong with it)."""
    text = " ".join(str(exc).split())
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "." and depth <= 0 and text[i + 1 : i + 2] == " " and text[i + 2 : i + 3].isupper():
            return text[: i + 1]
    return text


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))
