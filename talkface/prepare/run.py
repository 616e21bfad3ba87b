"""The per-clip preparation pipeline and the parallel, resumable run over a corpus.

One clip: decode (streaming) -> landmarks (detect + track; implausible faces rejected per frame) ->
gap filling and zero-phase smoothing -> similarity alignment to the template -> audio (16 kHz mono,
codec padding dropped) -> speech features at the frame rate -> aligned crops (second streaming decode)
written as mp4 with the audio -> ``clips/<id>.npz`` -> the manifest row (written last: its existence
marks the clip finished).

A damaged file keeps what decodes and is ``partial``, never dropped for one bad packet: frames missing
from the video are stood in for by the frame before them (so every frame keeps its time) and count as
frames without a face (flag ``missing_frames``); an audio packet that does not decode becomes silence
at its place (``audio_gap`` with its seconds, ``audio_bad_packets``). Audio that is silence
(``silent_audio``, under ``SILENT_AUDIO_DBFS``) makes the clip ``partial`` too: its speech features
are not speech.

Any failure of one clip becomes a ``failed`` row with its reason; the run goes on. The run over a
corpus (:func:`run_prepare`) holds the folder's writer lock, claims the settings, records the split
protocol, and on Ctrl-C stops with every finished clip kept (:class:`PrepareInterrupted`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkface import __version__
from talkface.core import media
from talkface.prepare.corpora.base import ClipSource
from talkface.store.dataset_writer import DatasetStore, ProtocolChange, words_array
from talkface.utils.atomic import atomic_path
from talkface.utils.lock import WriterLock

log = logging.getLogger("talkface.prepare")

#: A video that ends more than this before its audio or its word alignment is truncated.
TRUNCATION_TOLERANCE_S = 0.2
#: Set when the run is asked to stop (Ctrl-C in the parent, SIGTERM in a worker).
STOP = threading.Event()


@dataclass
class PrepareConfig:
    """Every setting that changes a prepared clip (stored in ``talkface_dataset.json``)."""

    fps: float = 25.0
    crop_size: int = 128
    landmark_backend: str = "dlib"
    landmark_options: dict[str, Any] = field(default_factory=dict)
    feature_backend: str = "logmel"
    feature_options: dict[str, Any] = field(default_factory=dict)
    max_gap_frames: int = 5  # no-face gaps up to this long are interpolated; longer stay NaN
    min_face_ratio: float = 0.5  # below this share of frames with a face the clip fails
    min_audio_ratio: float = 0.5  # audio covering less than this share of the video fails the clip
    crop_crf: int = 18
    keep_frames_max: int = 250  # frames kept between the passes (10 s at 25 fps); longer clips decode twice
    corpus_options: dict[str, Any] = field(default_factory=dict)  # the recipe's discovery options


@dataclass
class ClipTools:
    """Backends built once per worker process (model loading is the slow part)."""

    config: PrepareConfig
    landmarks: Any = None
    features: Any = None

    def __post_init__(self) -> None:
        from talkface.core.features import get_feature_backend
        from talkface.core.landmarks import get_landmark_backend

        self.landmarks = get_landmark_backend(self.config.landmark_backend, **self.config.landmark_options)
        self.features = get_feature_backend(self.config.feature_backend, **self.config.feature_options)

    def settings(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["landmark_options"] = self.landmarks.settings()
        cfg["feature_options"] = self.features.settings()
        from talkface.core.alignment import alignment_settings
        from talkface.core.landmarks.temporal import smoothing_settings

        cfg["alignment"] = alignment_settings(self.config.crop_size)
        cfg["smoothing"] = smoothing_settings()
        return cfg


class ClipFailure(RuntimeError):
    """A clip that cannot be prepared; the message is recorded in the manifest."""


def _initial_row(source: ClipSource, tools: ClipTools) -> dict[str, Any]:
    """A clip's manifest row before any work: ``failed`` until the clip is prepared."""
    cfg = tools.config
    return {
        "clip_id": source.clip_id,
        "corpus": source.corpus,
        "speaker": source.speaker,
        "split": source.split,
        "source_video": str(Path(source.source_video).resolve()),
        "source_audio": str(Path(source.source_audio).resolve()) if source.source_audio else None,
        "n_frames": None,
        "fps": cfg.fps,
        "duration_s": None,
        "transcript": source.transcript,
        "status": "failed",
        "error": None,
        "flags": ";".join(source.flags),
        "face_ratio": None,
        "landmark_backend": tools.landmarks.name,
        "feature_backend": tools.features.name,
        "feature_model_sha256": tools.features.settings().get("model_sha256"),
        "crop_size": cfg.crop_size,
        "talkface_version": __version__,
    }


def failure_row(source: ClipSource, store: DatasetStore, tools: ClipTools, error: str) -> dict[str, Any]:
    """Record ``source`` as ``failed`` with ``error`` (a worker that died: the clip's files are removed)."""
    row = _initial_row(source, tools)
    row["error"] = error
    store.remove_clip(source.clip_id)
    store.write_row(row)
    return row


@contextlib.contextmanager
def opencv_one_thread() -> Iterator[None]:
    """OpenCV on one thread while a clip is prepared (its setting restored after).

    OpenCV's calls here are small (one frame's colour conversion, a 128 px warp, a face patch): its
    thread pool adds CPU time and little speed, and a run is parallel over clips. Torch keeps its own
    setting (one thread in pool workers; a DeepSpeech backend in this process may use more).
    """
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def prepare_clip(source: ClipSource, store: DatasetStore, tools: ClipTools) -> dict[str, Any]:
    """Prepare one clip into ``store`` and return its manifest row (never raises for bad input)."""
    row = _initial_row(source, tools)
    flags = list(source.flags)
    try:
        with opencv_one_thread():
            status = _prepare(source, store, tools, row, flags)
        row["status"] = status
    except (ClipFailure, media.MediaError) as exc:
        row["error"] = str(exc)
        store.remove_clip(source.clip_id)
    except Exception as exc:  # an unexpected bug must not stop the whole run: record it loudly
        row["error"] = f"internal error: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        store.remove_clip(source.clip_id)
    if STOP.is_set():
        # Ctrl-C or SIGTERM arrived while decoding: the decoder may have turned it into an error, so
        # this clip's outcome is unknown. No row: the clip is redone when the run resumes.
        raise KeyboardInterrupt
    row["flags"] = ";".join(dict.fromkeys(flags))
    store.write_row(row)
    return row


def _prepare(
    source: ClipSource, store: DatasetStore, tools: ClipTools, row: dict[str, Any], flags: list[str]
) -> str:
    from talkface.core.alignment import align_landmarks, warp_crop
    from talkface.core.features import SILENT_AUDIO_DBFS, audio_level_dbfs
    from talkface.core.landmarks.base import implausible_frames
    from talkface.core.landmarks.temporal import fill_gaps, smooth_landmarks

    cfg = tools.config
    # Pass 1: landmarks over a streaming decode. A decode error part-way fails the clip (a truncated
    # file would otherwise give a silently shorter clip). Frames are decoded upright (the display
    # matrix of phone / in-the-wild video is applied); landmarks are in the upright frame's pixels.
    # The turn (the first frame's) is recorded on the clip.
    decoded: dict[str, Any] = {}
    kept: list[np.ndarray] | None = []  # pass-1 frames, kept for pass 2 while the clip is short
    frames = media.iter_frames(source.source_video, cfg.fps, info=decoded, threads=1)
    try:
        track = tools.landmarks.track(_keep_short(frames, kept, cfg.keep_frames_max))
    finally:
        orientation = decoded.get("orientation")
        if orientation is not None and not orientation.identity:
            flip = f"_{orientation.flip}flip" if orientation.flip else ""
            flags.append(f"rotated={orientation.degrees}{flip}")
    kept = kept if len(kept) == len(track) else None
    n = len(track)
    row["n_frames"] = n
    row["duration_s"] = n / cfg.fps
    if n == 0:
        raise ClipFailure("no video frames")
    damaged = False  # a whole clip is not what the file holds: the clip is partial
    found = np.asarray(track.face_found, dtype=bool).copy()
    stand_ins = [i for i in decoded.get("filled_frames") or [] if i < n]
    if stand_ins:  # frames the file lost, stood in for by the frame before: no face of their own
        found[stand_ins] = False
        flags.append(f"missing_frames={len(stand_ins)}")
        damaged = True

    # Audio: the corpus' separate file when given, else the video's own track.
    audio_path = source.source_audio or source.source_video
    audio_info: dict[str, Any] = {}
    try:
        audio = media.read_audio(audio_path, media.AUDIO_RATE, info=audio_info)
    except media.MediaError as exc:
        raise ClipFailure(f"no usable audio: {exc}") from exc
    gap_s = float(sum(d for _, d in audio_info.get("gaps") or []))
    if gap_s > 0:
        flags.append(f"audio_gap={gap_s:.3f}s")
    if audio_info.get("bad_packets"):
        flags.append(f"audio_bad_packets={audio_info['bad_packets']}")
    elif audio_info.get("error"):  # the file broke off part-way through the audio
        flags.append("audio_read_error")
    damaged |= bool(gap_s > 0 or audio_info.get("error"))
    truncated = _check_truncation(source, n, cfg, len(audio) / media.AUDIO_RATE)
    if truncated:
        flags.append(truncated)

    rejected = implausible_frames(track.points, found, getattr(track, "orientation", None))
    for mask in rejected.values():
        found &= ~mask
    n_rejected = dict(track.rejected)
    for reason, mask in rejected.items():
        if mask.any():
            n_rejected[reason] = n_rejected.get(reason, 0) + int(mask.sum())
    info = getattr(track, "info", None) or {}
    if info.get("multiple_faces"):  # the backend chose one face (the largest or the most confident)
        select = tools.landmarks.settings().get("select", "score")
        flags.append(f"multiple_faces={info['multiple_faces']}:{select}")
    by = {k[len("detected_by_"):]: v for k, v in info.items() if k.startswith("detected_by_")}
    first = (getattr(tools.landmarks, "detectors", None) or ("",))[0]
    if any(name != first for name in by):  # a detector chain's fallback found faces the first missed
        flags.append("detected_by=" + ",".join(f"{k}:{v}" for k, v in by.items()))
    if n_rejected:
        flags.append("rejected_faces=" + ",".join(f"{k}:{v}" for k, v in sorted(n_rejected.items())))
    face_ratio = float(found.mean())
    row["face_ratio"] = face_ratio
    if face_ratio < cfg.min_face_ratio:
        why = ""
        if n_rejected:
            why = " (not a plausible face: " + ", ".join(f"{v} {k.replace('_', ' ')}"
                                                         for k, v in sorted(n_rejected.items())) + ")"
        raise ClipFailure(
            f"face found on {found.sum()} of {n} frames ({face_ratio:.0%} < {cfg.min_face_ratio:.0%}){why}"
        )
    points = np.where(found[:, None, None], track.points, np.nan).astype(np.float32)
    points = fill_gaps(points, found, cfg.max_gap_frames)
    points = smooth_landmarks(points)
    has_face = ~np.isnan(points).any(axis=(1, 2))
    status = "ok" if has_face.all() and not truncated and not damaged else "partial"
    blank_at: int | None = None  # where a blank-frame count from pass 2 goes among the flags
    if not has_face.all():
        flags.append(f"no_face_frames={int((~has_face).sum())}")
        if kept is not None:  # e.g. GRID clips that start on flat grey frames before the picture fades in
            n_blank = sum(_frame_contrast(frame) < BLANK_FRAME_STD for frame in kept)
            if n_blank:
                flags.append(f"blank_frames={n_blank}")
        else:  # a long clip: counted during the second decode
            blank_at = len(flags)
    elif not found.all():
        flags.append(f"interpolated_frames={int((~found).sum())}")
    transforms, aligned = align_landmarks(points, cfg.crop_size)

    n_samples = int(round(n / cfg.fps * media.AUDIO_RATE))
    heard_s = len(audio) / media.AUDIO_RATE - gap_s  # what decoded, not the silence put in its gaps
    if heard_s < cfg.min_audio_ratio * n / cfg.fps:
        raise ClipFailure(f"audio covers {heard_s:.2f} s of a {n / cfg.fps:.2f} s video"
                          + (f" ({gap_s:.2f} s lost to packets that did not decode)" if gap_s else ""))
    audio, padded = media.fit_audio_length(audio, n_samples)
    if padded > media.AUDIO_RATE / cfg.fps:  # more than one frame of silence added
        flags.append(f"audio_padded_ms={1000 * padded / media.AUDIO_RATE:.0f}")
    level = audio_level_dbfs(audio, media.AUDIO_RATE)
    if level < SILENT_AUDIO_DBFS:  # no speech to learn from or to score lip sync against
        flags.append(f"silent_audio={level:.0f}dBFS")
        status = "partial"
    feats = tools.features.compute(audio, n, cfg.fps)
    if len(feats) != n:
        raise ClipFailure(f"feature count {len(feats)} != frame count {n}")

    # Pass 2: aligned crops. Frames without a transform reuse the nearest valid one so the crop video
    # keeps all n frames in step with the arrays.
    fill = _nearest_valid_index(~np.isnan(transforms).any(axis=(1, 2)))
    second_pass = kept if kept is not None else media.iter_frames(source.source_video, cfg.fps, threads=1)
    n_blank = [0]
    if blank_at is not None:
        second_pass = _count_blank(second_pass, n_blank)
    crops = (warp_crop(frame, transforms[fill[i]], cfg.crop_size) for i, frame in enumerate(second_pass))
    with atomic_path(store.crop_path(source.clip_id)) as tmp:
        written = media.write_video(tmp, crops, cfg.fps, audio, media.AUDIO_RATE, crf=cfg.crop_crf)
        if written != n:
            raise ClipFailure(f"second decode gave {written} frames, first gave {n}")
    if blank_at is not None and n_blank[0]:
        flags.insert(blank_at, f"blank_frames={n_blank[0]}")

    store.write_clip(
        source.clip_id,
        landmarks=points.astype(np.float32),
        face_found=found,
        transform=transforms.astype(np.float32),
        landmarks_aligned=aligned.astype(np.float32),
        audio_features=feats.astype(np.float16),
        words=words_array(source.words),
    )
    return status


BLANK_FRAME_STD = 15.0  # grey-level standard deviation under which a frame shows no picture


def _check_truncation(source: ClipSource, n: int, cfg: PrepareConfig, audio_s: float) -> str | None:
    """A ``video_truncated`` flag when the video ends well before its audio or word alignment.

    A cut MPEG file decodes cleanly to a shorter clip, so the other tracks are the only evidence. A
    video covering less than ``min_audio_ratio`` of what it should fails the clip.
    """
    video_s = n / cfg.fps
    expected, what = audio_s, "its audio"
    ends = [end for _, end, _ in source.words] + ([source.expected_duration_s]
                                                  if source.expected_duration_s else [])
    if ends and max(ends) > expected:
        expected, what = max(ends), "its alignment"
    if expected - video_s <= TRUNCATION_TOLERANCE_S:
        return None
    message = f"video truncated: {n} frames ({video_s:.2f} s) decoded, but {what} runs to {expected:.2f} s"
    if video_s < cfg.min_audio_ratio * expected:
        raise ClipFailure(message)
    return f"video_truncated={video_s:.2f}/{expected:.2f}s"


def _frame_contrast(frame: np.ndarray) -> float:
    """Grey-level standard deviation of a frame (every 4th pixel each way; the blank-frame check)."""
    return float(frame[::4, ::4].mean(axis=2).std())


def _count_blank(frames: Iterable[np.ndarray], count: list[int]) -> Iterator[np.ndarray]:
    """Pass frames through, counting in ``count[0]`` the blank ones (contrast under ``BLANK_FRAME_STD``)."""
    for frame in frames:
        if _frame_contrast(frame) < BLANK_FRAME_STD:
            count[0] += 1
        yield frame


def _keep_short(frames: Iterator[np.ndarray], kept: list[np.ndarray], limit: int) -> Iterator[np.ndarray]:
    """Pass frames through, keeping them in ``kept`` until ``limit``; past it, drop them all.

    Short clips (GRID's 3 s) are then decoded once; long ones twice, so memory stays bounded.
    """
    for frame in frames:
        if len(kept) < limit:
            kept.append(frame)
        elif kept:
            kept.clear()
            limit = 0
        yield frame


def _nearest_valid_index(valid: np.ndarray) -> np.ndarray:
    """For each index, the nearest index where ``valid`` is True (all must not be False)."""
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        raise ClipFailure("no frame could be aligned")
    pos = np.searchsorted(idx, np.arange(len(valid)))
    left = idx[np.clip(pos - 1, 0, len(idx) - 1)]
    right = idx[np.clip(pos, 0, len(idx) - 1)]
    take_left = np.abs(np.arange(len(valid)) - left) <= np.abs(right - np.arange(len(valid)))
    return np.where(take_left, left, right)


# --------------------------------------------------------------------------------------------------
# The run over a corpus.

_WORKER_TOOLS: ClipTools | None = None
_WORKER_STORE: DatasetStore | None = None


def _stop_on_terminate(signum: int, frame: Any) -> None:
    STOP.set()
    raise SystemExit(143)  # unwinds through the atomic writers, which remove their temporary files


def _stop_on_interrupt(signum: int, frame: Any) -> None:
    STOP.set()
    raise KeyboardInterrupt


def _init_worker(config: PrepareConfig, root: str) -> None:
    global _WORKER_TOOLS, _WORKER_STORE
    # Ctrl-C reaches the whole process group: the parent decides what happens, workers ignore it and
    # are stopped with SIGTERM, which unwinds cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_terminate)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER_TOOLS = ClipTools(config)
    # One torch thread per worker when a backend uses torch (DeepSpeech); importing torch only to set
    # this would cost each worker ~2 s of CPU and ~150 MB.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    _WORKER_STORE = DatasetStore(root)


def _run_in_worker(source: ClipSource) -> dict[str, Any]:
    assert _WORKER_TOOLS is not None and _WORKER_STORE is not None
    return prepare_clip(source, _WORKER_STORE, _WORKER_TOOLS)


# -- Ray tasks: each worker process builds its backends once -------------------------------------

_CACHE: dict[tuple[str, str], Any] = {}


def _tools_for(config: Any, root: str) -> tuple[Any, Any]:
    """(ClipTools, DatasetStore) of this worker process, built on its first clip of a run."""
    key = (repr(config), root)
    if key not in _CACHE:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        _CACHE.clear()
        _CACHE[key] = (ClipTools(config), DatasetStore(root))
    return _CACHE[key]


def prepare_in_worker(source: Any, config: Any, root: str) -> dict[str, Any]:
    """One clip in a Ray worker: the pipeline's ``prepare_clip`` with this worker's cached backends."""
    tools, store = _tools_for(config, root)
    return prepare_clip(source, store, tools)




def run_ray(
    todo: Sequence[Any],
    root: str,
    config: Any,
    record: Callable[[dict[str, Any]], None],
    failure_row: Callable[[Any, str], dict[str, Any]],
    address: str | None = None,
    num_cpus: int | None = None,
) -> None:
    """Prepare ``todo`` as Ray tasks; ``record`` gets each row in completion order.

    ``failure_row(source, message)`` builds (and writes) the row of a clip whose task died.
    KeyboardInterrupt cancels the tasks in flight (their atomic writes leave only temporary files,
    removed by the next run) and propagates.
    """
    from talkface.core.executors import run_ray_tasks

    run_ray_tasks(prepare_in_worker, todo, (config, root), record, failure_row, address, num_cpus)


@dataclass
class RunSummary:
    total: int
    skipped: int
    prepared: int
    statuses: dict[str, int]
    failures: list[tuple[str, str]]
    seconds: float
    frames: int
    protocol: ProtocolChange | None = None


class PrepareInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_prepare`: ``finished`` of ``total`` clips are done and kept."""

    def __init__(self, finished: int, total: int, in_run: int) -> None:
        super().__init__(finished, total)
        self.finished, self.total, self.in_run = finished, total, in_run

    def __str__(self) -> str:
        return (f"interrupted: {self.finished} clips finished, run the same command to continue "
                f"({self.total - self.finished} of {self.total} left)")


def sources_protocol(sources: Sequence[ClipSource]) -> str:
    """The split protocol the sources were discovered with (``custom`` when they do not say)."""
    names = {s.protocol for s in sources if s.protocol}
    if len(names) > 1:
        raise ValueError(f"clips of several split protocols in one run: {sorted(names)}")
    return names.pop() if names else "custom"


def run_prepare(
    sources: Sequence[ClipSource],
    store: DatasetStore,
    config: PrepareConfig,
    workers: int = 1,
    overwrite: bool = False,
    on_clip: Callable[[dict[str, Any]], None] | None = None,
    protocol: str | None = None,
    tools: ClipTools | None = None,
    corpus: str | None = None,
    executor: str = "process",
    ray_address: str | None = None,
) -> RunSummary:
    """Prepare every clip not already finished; rebuild the manifest; return counts and failures.

    Holds ``store``'s writer lock for the whole run (:class:`talkface.utils.lock.FolderLocked` when
    another live process holds it), checks the settings (:class:`SettingsMismatch`), and records the
    sources' parts under ``protocol`` (default: the protocol the recipe discovered them with), never
    touching another protocol. Ctrl-C raises :class:`PrepareInterrupted` after the manifest is
    rebuilt from the finished clips.

    ``executor``: ``process`` (this process when ``workers`` is 1, else a pool of ``workers``
    processes) or ``ray`` (Ray tasks, on the cluster at ``ray_address`` or a local instance with
    ``workers`` CPUs; see :mod:`talkface.core.executors`). The datasets they write are identical.
    """
    from talkface.core.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    protocol = protocol or sources_protocol(sources)
    tools = tools or ClipTools(config)
    corpora = {s.corpus for s in sources}
    corpus = corpus or (corpora.pop() if len(corpora) == 1 else "mixed")
    with WriterLock(store.root, "prepare"):
        store.claim({"corpus": corpus, **tools.settings()}, overwrite=overwrite)
        removed = store.remove_temporary_files()
        if removed:
            log.info("removed %d temporary files left by a stopped run", removed)
        change = store.add_protocol(protocol, {s.clip_id: s.split for s in sources})
        return _run_clips(sources, store, config, tools, workers, overwrite, on_clip, change,
                          executor, ray_address)


def _run_clips(
    sources: Sequence[ClipSource],
    store: DatasetStore,
    config: PrepareConfig,
    tools: ClipTools,
    workers: int,
    overwrite: bool,
    on_clip: Callable[[dict[str, Any]], None] | None,
    change: ProtocolChange,
    executor: str = "process",
    ray_address: str | None = None,
) -> RunSummary:
    todo = []
    for src in sources:
        if overwrite:
            store.remove_clip(src.clip_id)
        if not store.is_done(src.clip_id):
            todo.append(src)
    statuses: dict[str, int] = {}
    failures: list[tuple[str, str]] = []
    frames = 0
    done_in_run = 0
    t0 = time.perf_counter()

    def record(row: dict[str, Any]) -> None:
        nonlocal frames, done_in_run
        done_in_run += 1
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        if row["status"] == "failed":
            failures.append((row["clip_id"], str(row["error"]).splitlines()[0]))
        frames += int(row["n_frames"] or 0)
        if on_clip:
            on_clip(row)

    STOP.clear()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _stop_on_interrupt) if in_main else None
    try:
        if todo and executor == "ray":
            run_ray(todo, str(store.root), config, record,
                    lambda src, error: failure_row(src, store, tools, error),
                    address=ray_address, num_cpus=workers)
        elif todo and workers <= 1:
            for src in todo:
                record(prepare_clip(src, store, tools))
        elif todo:
            _run_pool(todo, store, config, workers, record)
    except KeyboardInterrupt:
        if in_main:  # a second Ctrl-C waits for the manifest below
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        store.write_manifest()
        finished = sum(store.is_done(s.clip_id) for s in sources)
        raise PrepareInterrupted(finished, len(sources), done_in_run) from None
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        STOP.clear()
    store.write_manifest()
    return RunSummary(
        total=len(sources),
        skipped=len(sources) - len(todo),
        prepared=len(todo),
        statuses=statuses,
        failures=failures,
        seconds=time.perf_counter() - t0,
        frames=frames,
        protocol=change,
    )


def _run_pool(todo: list[ClipSource], store: DatasetStore, config: PrepareConfig, workers: int,
              record: Callable[[dict[str, Any]], None]) -> None:
    from talkface.core.executors import run_process_pool

    run_process_pool(_run_in_worker, todo, record, workers, _init_worker, (config, str(store.root)))
