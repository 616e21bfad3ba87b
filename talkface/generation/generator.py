"""The generation pipeline: speech + one identity image -> a talking-face mp4 (the four stages chained).

wav (any rate, read at 16 kHz mono) -> speech features (the backend the landmark checkpoint's dataset
was prepared with) -> person-independent landmarks -> generated blinks replace the eye points ->
retargeted to the identity's aligned landmarks -> landmark images -> texture generator -> frames of the
texture stage's size -> H.264 mp4 with the input audio muxed in (AAC), :data:`VIDEO_CODEC`.

Two forms, one writer:

- one video (``generate --audio --identity``): ``ceil(duration_s * fps)`` frames at 25 fps, so the video
  covers the whole utterance;
- every usable clip of a prepared dataset's part (``generate --data D --part test``): one
  ``<clip_id>.mp4`` per clip with exactly the reference crop's frame count and the clip's own audio,
  identity = the clip's frame with a closed, neutral mouth and open eyes
  (:func:`talkface.core.face68.choose_identity_frame`). :func:`talkface.generation.part.generate_part`
  runs any :class:`~talkface.generation.method.Method`
  this way, which is how the built-in baselines (:mod:`talkface.generation.baselines`) write videos
  that differ from the trained pipeline's only in what the method computes.

Everything happens in the aligned crop frame: the identity image is aligned to the canonical template
exactly as prepared crops are (similarity fitted on the stable points), so its landmarks live where
the models' landmarks live.

Checkpoints are found and read through :mod:`talkface.store.checkpoints` (the last/best policy lives
there) and datasets through :mod:`talkface.store.dataset` (parts, the usable rule, crop size);
``generation.json`` records the SHA-256 of each weights file as it was loaded.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talkface import __version__
from talkface.core import media
from talkface.core.face68 import NoFaceError
from talkface.store.identity_source import DEFAULT_IDENTITY_FROM, IdentitySource, identity_source
from talkface.utils import atomic

FPS = 25.0
SAMPLE_RATE = 16000
STAGES = ("landmarks", "blinks", "texture")  # the trained stages, in the order they run
# The run folder each stage's `talkface train` writes by default (named in "train it first" messages).
TRAIN_OUT = {"landmarks": "lm", "blinks": "blink", "texture": "tex"}
# What media.write_video encodes with (its defaults), recorded in generation.json: every method,
# baseline and comparison is written with exactly these.
VIDEO_CODEC = {"video": "libx264", "pix_fmt": "yuv420p", "crf": 18, "preset": "ultrafast", "audio": "aac"}
# The smallest face the dlib HOG detector finds with its one upsampled retry, measured on GRID frames
# scaled down (a face-filling 48x48 image is found, 40x40 is not).
MIN_FACE_PX = 48


def n_frames_for(n_samples: int, sr: int = SAMPLE_RATE, fps: float = FPS) -> int:
    """``ceil(duration * fps)`` (at least 1), with a tolerance so 48000 samples give exactly 75."""
    return max(1, math.ceil(n_samples * fps / sr - 1e-6))


class StageMissing(FileNotFoundError):
    """A method needs a trained stage that is not under ``--checkpoints``; ``str()`` names the command."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# -------------------------------------------------------------------------------------------------
# the models


@dataclass
class Generator:
    """The trained stages a method needs plus the feature backend, ready to run on ``device``.

    A stage that was not loaded is ``None`` (a baseline loads only what it uses).
    """

    landmark_model: Any = None
    mean_face: np.ndarray | None = None  # (68, 2) unit coordinates
    blink_model: Any = None
    texture: Any = None  # TextureGenerator
    texture_config: Any = None  # TextureConfig
    features: Any = None  # FeatureBackend
    device: Any = "cpu"  # torch.device
    batch_size: int = 32
    # where the texture stage's pixels are kept (talkface.generation.composite.COMPOSITES)
    composite: str = "face-parts"
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        if self.texture_config is None:
            raise RuntimeError("no texture stage loaded")
        return int(self.texture_config.image_size)


def resolve_device(device: str = "auto") -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def find_run(checkpoints: str | os.PathLike, stage: str, needed_by: str = "generate",
             data: str | os.PathLike | None = None) -> Any:
    """The ``StageRun`` of ``stage`` under ``checkpoints``; :class:`StageMissing` naming the command to
    train it when there is none."""
    from talkface.store.checkpoints import StageNotFound, find_stage

    root = Path(checkpoints)
    try:
        return find_stage(root, stage)
    except StageNotFound as exc:
        if not root.exists():
            where = f"{root} does not exist"
        else:
            where = f"there is none under {root}"
        data_arg = f"--data {data} " if data else "--data DATA "
        raise StageMissing(f"{needed_by} needs a trained '{stage}' stage and {where}: run `talkface train "
                           f"{stage} {data_arg}--out {root / TRAIN_OUT[stage]}` first") from exc


def load_generator(checkpoints: str | os.PathLike, device: str = "auto", deepspeech_model: str | None = None,
                   batch_size: int | None = None, stages: Iterable[str] = STAGES, needed_by: str = "generate",
                   data: str | os.PathLike | None = None, composite_rule: str | None = None) -> Generator:
    """Find and load ``stages`` (default: landmarks, blinks and texture) under ``checkpoints``.

    ``composite_rule``: where the texture stage's pixels are kept (:mod:`talkface.generation.composite`);
    default: the rule for what the texture stage edits (``interior`` over the warped identity).

    Each stage's file is the one its run's checkpoint.json selects (``best.pt`` when the stage selected
    one, else ``last.pt``); it is read once, and the provenance names that file and its SHA-256.
    """
    stages = tuple(s for s in STAGES if s in set(stages))
    dev = resolve_device(device)
    runs = {s: find_run(checkpoints, s, needed_by, data) for s in stages}  # all missing ones fail first
    gen = Generator(device=dev, batch_size=batch_size or (64 if dev.type == "cuda" else 16))
    loaded: dict[str, Any] = {}
    for stage, run in runs.items():
        ckpt = run.load(map_location="cpu")  # read once; its provenance hashes these very bytes
        loaded[stage] = {**ckpt.provenance(), "path": str(Path(ckpt.path).resolve())}
        if stage == "landmarks":
            from talkface.models.speech_to_landmarks import landmark_model_from_state

            gen.landmark_model, lm_config, mean_face = landmark_model_from_state(ckpt.state, dev)
            # how its speech is read and how far its mouth moves (the gain fitted on held-out clips)
            loaded[stage].update(feature_norm=lm_config.feature_norm,
                                 motion_gain=round(float(gen.landmark_model.motion_gain), 4),
                                 voice_augmentation={"voice_warp": list(lm_config.voice_warp),
                                                     "freq_masks": int(lm_config.freq_masks)})
            gen.mean_face = np.asarray(mean_face, np.float32)
            gen.features = feature_backend(ckpt.state, lm_config, deepspeech_model)
        elif stage == "blinks":
            from talkface.models.blinks import blink_model_from_state

            gen.blink_model = blink_model_from_state(ckpt.state, dev)
        else:
            import torch

            from talkface.models.texture import texture_generator_from_state

            texture, gen.texture_config, header = texture_generator_from_state(ckpt.state, dev)
            gen.texture = texture.to(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
            # the weight average (generator_ema) when the checkpoint holds one, else the raw generator
            loaded[stage]["weights"] = header["weights"]
    gen.provenance = {"talkface_version": __version__, "checkpoints": loaded}
    if gen.features is not None:
        gen.provenance["feature_backend"] = gen.features.settings()
    if gen.texture_config is not None:
        from talkface.generation import composite

        gen.composite = composite.check_composite(composite_rule or composite.default_composite(
            gen.texture_config.base))
        gen.provenance["image_size"] = gen.size
        gen.provenance["composite"] = gen.composite
        gen.provenance["composite_rule"] = composite.RULES[gen.composite]
    if gen.blink_model is not None:
        amplitude: dict[str, Any] = {"checkpoint": float(gen.blink_model.config.amplitude)}
        calibration = apply_calibration(gen, runs["blinks"].out_dir)
        if calibration is not None:
            amplitude["calibration"] = calibration
        gen.provenance["blink_amplitude"] = amplitude
        from talkface.models.blinks import HOLD_RULE

        gen.provenance["blink_hold"] = HOLD_RULE
    if gen.mean_face is not None:
        from talkface.models.retarget import MOUTH_SCALE_RULE, REST_ANCHOR_RULE

        gen.provenance["retarget_anchor"] = REST_ANCHOR_RULE
        gen.provenance["retarget_mouth_scale"] = MOUTH_SCALE_RULE
    return gen


def feature_backend(lm_ckpt: dict[str, Any], lm_config: Any, deepspeech_model: str | None) -> Any:
    """The backend the landmark model was trained on, checked against the dataset's recorded settings."""
    from talkface.core.features import get_feature_backend

    ds = lm_ckpt.get("dataset") or {}
    settings = ds.get("settings") or (ds.get("info") or {}).get("settings") or {}
    name = getattr(lm_config, "feature_backend", "") or settings.get("feature_backend") or "logmel"
    recorded = settings.get("feature_options") or {}
    options: dict[str, Any] = {}
    if name == "deepspeech":
        if not deepspeech_model:
            raise ValueError("the landmark model was trained on DeepSpeech features: pass --deepspeech-model "
                             "PATH/output_graph.pb (the DeepSpeech v0.1.0 release file)")
        options["model_path"] = str(deepspeech_model)
    elif "window" in recorded:
        options["window"] = int(recorded["window"])
    backend = get_feature_backend(name, **options)
    want = (getattr(lm_config, "feature_window", backend.window),
            getattr(lm_config, "feature_dim", backend.dim))
    if (backend.window, backend.dim) != tuple(want):
        raise ValueError(f"feature backend {name!r} gives {backend.window}x{backend.dim} windows, the "
                         f"landmark model expects {want[0]}x{want[1]}")
    sha = recorded.get("model_sha256")
    if sha and backend.settings().get("model_sha256") not in (None, sha):
        raise ValueError(f"--deepspeech-model differs from the model the dataset was prepared with ({sha})")
    return backend


# -------------------------------------------------------------------------------------------------
# inputs: identity image and speech


def align_identity(image: np.ndarray, size: int, landmark_backend: Any = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The aligned ``size`` crop of an RGB identity image and its 68 landmarks in crop pixels.

    Raises :class:`NoFaceError` when the image is too small to hold a detectable face or dlib finds
    none, ``ValueError`` when it finds several.
    """
    import dlib

    from talkface.core.alignment import (
        STABLE_POINTS,
        apply_transform,
        estimate_similarity,
        load_template,
        warp_crop,
    )
    from talkface.core.landmarks import get_landmark_backend

    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    advice = (f"give an image of at least {size}x{size} pixels (the generated frames' size) in which one "
              f"face fills most of the picture")
    if min(height, width) < MIN_FACE_PX:
        raise NoFaceError(f"the identity image is {width}x{height} pixels, too small to find a face in (the "
                          f"face detector needs a face at least {MIN_FACE_PX} pixels wide): {advice}")
    backend = landmark_backend or get_landmark_backend("dlib")
    points = backend.detect(image)
    if points is None:
        small = f" (it is only {width}x{height} pixels: {advice})" if min(height, width) < size else ""
        raise NoFaceError("no face found in the identity image: give a photo with one clearly visible, "
                          f"roughly frontal face (dlib HOG detector){small}")
    _, scores, _ = dlib.get_frontal_face_detector().run(image, 0, 0)
    n_faces = sum(s > 0.0 for s in scores)
    if n_faces > 1:
        raise ValueError(f"the identity image holds {n_faces} faces: crop it to one face")
    stable = list(STABLE_POINTS)
    transform = estimate_similarity(points[stable], load_template(size)[stable])
    return warp_crop(image, transform, size), apply_transform(points, transform)


def read_identity_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 pixels of an image file; ``ValueError`` (one sentence) when it is not a readable image."""
    import cv2

    try:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.size == 0:
        raise ValueError(f"{path} is not a readable image: give a png or jpg photo with one face")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_speech(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at ``sr`` from an audio file or a video's sound; ``ValueError`` (one sentence) when
    it holds no readable audio."""
    try:
        audio = media.read_audio(path, sr)
    except media.MediaError as exc:
        raise ValueError(f"{path} holds no readable audio ({_short_reason(exc, path)}): give a wav, mp3 or "
                         "m4a file, or a video with a sound track") from exc
    if not np.isfinite(audio).all():
        raise ValueError(f"{path} holds no readable audio (samples are not finite numbers)")
    return audio


def _short_reason(exc: Exception, path: str | os.PathLike) -> str:
    """FFmpeg's reason without the errno, the file name and the wrapping: 'invalid data found ...'."""
    text = str(exc)
    inner = re.search(r"\((.*)\)\s*$", text)
    text = inner.group(1) if inner else text.replace(f"{path}: ", "")
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    text = re.sub(r":\s*'[^']*'\s*$", "", text)
    return text[:1].lower() + text[1:]


# -------------------------------------------------------------------------------------------------
# landmarks and frames


def speech_landmarks(gen: Generator, feats: np.ndarray) -> np.ndarray:
    """Stage 1 on (T, W, D) features: (T, 68, 2) person-independent landmarks in unit coordinates."""
    from talkface.models.speech_to_landmarks import predict_landmarks

    return predict_landmarks(gen.landmark_model, feats)


def to_identity(gen: Generator, unit: np.ndarray, identity_px: np.ndarray, size: int) -> np.ndarray:
    """Stage 3: unit person-independent landmarks -> the identity's landmarks in ``size`` crop pixels,
    anchored at the sequence's closed mouth (:func:`talkface.models.retarget.rest_anchor`), since the
    identity frame shows a closed mouth."""
    from talkface.models.retarget import rest_anchor, retarget

    return retarget(unit, rest_anchor(unit, gen.mean_face), identity_px / size) * np.float32(size)


def landmarks_from_features(gen: Generator, feats: np.ndarray, identity_px: np.ndarray, seed: int = 0,
                            blinks: bool = True) -> np.ndarray:
    """Stages 1-3 on (T, W, D) features: speech landmarks, blinks imposed (unless ``blinks`` is False:
    the eye points stay the speech model's), retargeted; crop pixels at the texture size."""
    from talkface.models.blinks import impose_blinks

    unit = speech_landmarks(gen, feats)
    if blinks:
        unit = impose_blinks(unit, gen.blink_model.sample(len(unit), FPS, generator_seed=seed))
    return to_identity(gen, unit, identity_px, gen.size)


def target_landmarks(gen: Generator, audio: np.ndarray, identity_px: np.ndarray, seed: int = 0,
                     n_frames: int | None = None, blinks: bool = True) -> np.ndarray:
    """(T, 68, 2) target landmarks in texture-crop pixels for 16 kHz ``audio`` (T = ``n_frames``, by
    default ``ceil(duration * fps)``)."""
    n = n_frames or n_frames_for(len(audio))
    feats = gen.features.compute(audio, n_frames=n, fps=FPS)
    return landmarks_from_features(gen, feats, identity_px, seed, blinks)


def render_frames(gen: Generator, identity_crop: np.ndarray, landmarks_px: np.ndarray, paste: bool = True,
                  identity_px: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Texture generator over batches of landmark images, composed by ``gen.composite``
    (:mod:`talkface.generation.composite`): ``interior`` keeps its pixels inside the open mouth and the
    eyes over the identity warped to each target; ``face-parts`` pastes its mouth and eyes into the
    identity frame (``paste=False``: its whole frame, for landmarks that carry head motion; the warp of
    ``interior`` follows them anyway). Yields (size, size, 3) uint8 frames. The warp (of ``interior``,
    or of a texture stage that edits the warped identity, ``base="warp"``) needs the identity's points
    ``identity_px`` (crop pixels at the texture size)."""
    import torch

    from talkface.generation.composite import paste_into_identity, paste_into_warp
    from talkface.generation.warp import warp_frames
    from talkface.models.render import render_batch, to_model_range

    warped_base = gen.texture_config.base == "warp"
    interior = gen.composite == "interior"
    if (warped_base or interior) and identity_px is None:
        raise ValueError("this texture stage or composite rule warps the identity: render_frames needs "
                         "identity_px")
    with torch.inference_mode():
        ident = torch.from_numpy(to_model_range(identity_crop[None])).to(gen.device)
        fmt = torch.channels_last
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if torch.device(gen.device).type == "cuda"
                    else contextlib.nullcontext())
        for start in range(0, len(landmarks_px), gen.batch_size):
            chunk = landmarks_px[start:start + gen.batch_size]
            sketches = render_batch(chunk, gen.texture_config.render_settings)
            lm = torch.from_numpy(to_model_range(sketches)).to(gen.device).contiguous(memory_format=fmt)
            idb = ident.expand(len(lm), -1, -1, -1).contiguous(memory_format=fmt)
            base = warped = None
            if warped_base or interior:
                warped = np.stack(list(warp_frames(identity_crop, identity_px, chunk)))
            if warped_base:
                base = torch.from_numpy(to_model_range(warped)).to(gen.device).contiguous(memory_format=fmt)
            with autocast:
                frames = gen.texture(idb, lm, base).frame
            out = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            frames_np = out.permute(0, 2, 3, 1).cpu().numpy()
            if interior:
                yield from paste_into_warp(frames_np, warped, chunk)
            else:
                yield from (paste_into_identity(frames_np, identity_crop, chunk) if paste else frames_np)


def write_video(out: str | os.PathLike, frames: Iterable[np.ndarray], audio: np.ndarray | None,
                fps: float = FPS, expect_frames: int | None = None) -> int:
    """Write frames + 16 kHz mono audio as an mp4 with :data:`VIDEO_CODEC`, atomically: the one writer of
    every video generation makes. With ``expect_frames`` a different count is an error and no file."""
    with atomic.atomic_path(out) as tmp:
        n = media.write_video(tmp, frames, fps, audio=audio, sr=SAMPLE_RATE, crf=VIDEO_CODEC["crf"],
                              preset=VIDEO_CODEC["preset"])
        if expect_frames is not None and n != expect_frames:
            raise media.MediaError(f"{out}: {n} frames made, the reference has {expect_frames}")
    return n


# -------------------------------------------------------------------------------------------------
# one video from files


def generate_video(gen: Generator, audio: np.ndarray, identity_crop: np.ndarray, identity_px: np.ndarray,
                   out: str | os.PathLike, seed: int = 0) -> dict[str, Any]:
    """Write one talking-face mp4 (atomic) with ``audio`` (16 kHz mono) muxed in; return its record."""
    landmarks = target_landmarks(gen, audio, identity_px, seed)
    n = write_video(out, render_frames(gen, identity_crop, landmarks, identity_px=identity_px), audio, FPS)
    return {"out": str(out), "n_frames": n, "duration_s": len(audio) / SAMPLE_RATE, "seed": seed,
            "fps": FPS, "frame_count_rule": "ceil(duration_s * fps)", "video": VIDEO_CODEC, **gen.provenance}


def read_inputs(audio_path: str | os.PathLike, identity_path: str | os.PathLike
                ) -> tuple[np.ndarray, np.ndarray]:
    """(16 kHz speech, RGB identity image) of the one-video form; one-sentence ``ValueError`` for a file
    that is not audio or not an image (checked before any model is loaded)."""
    return read_speech(audio_path), read_identity_image(identity_path)


def generate_from_files(gen: Generator, audio_path: str | os.PathLike, identity_path: str | os.PathLike,
                        out: str | os.PathLike, seed: int = 0,
                        inputs: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """``talkface generate --audio --identity``: the single-video form (``inputs``: what
    :func:`read_inputs` already read from those files)."""
    audio, image = inputs if inputs is not None else read_inputs(audio_path, identity_path)
    crop, points = align_identity(image, gen.size)
    record = generate_video(gen, audio, crop, points, out, seed)
    record.update(audio=str(audio_path), identity=str(identity_path))
    return record


# -------------------------------------------------------------------------------------------------
# a prepared dataset's clips


@dataclass
class ClipInputs:
    """What every method gets for one prepared clip (all in the dataset's crop frame and size)."""

    clip_id: str
    n_frames: int  # the reference crop's frame count: every method's video has exactly this many
    fps: float
    audio: np.ndarray  # 16 kHz mono, fitted to n_frames / fps seconds
    identity_index: int  # choose_identity_frame: closed, neutral mouth, eyes open
    identity_crop: np.ndarray  # (S, S, 3) uint8, S = crop size
    identity_px: np.ndarray  # (68, 2) its landmarks in crop pixels
    reference_landmarks: np.ndarray  # (T, 68, 2) aligned landmarks in crop pixels, NaN where none
    crop_path: Path
    identity: IdentitySource | None = None  # the clip and frame the identity image is (None: this clip's)

    @property
    def crop_size(self) -> int:
        return int(self.identity_crop.shape[0])

    def identity_at(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The identity crop and its landmarks at ``size`` pixels (the texture stage's size)."""
        return resize_crop(self.identity_crop, size), self.identity_px * np.float32(size / self.crop_size)

    def reference_frames(self) -> Iterator[np.ndarray]:
        return media.iter_frames(self.crop_path)


def resize_crop(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frame.shape[0] == size:
        return frame
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def clip_inputs(ds: Any, clip_id: str, identity_from: str = DEFAULT_IDENTITY_FROM) -> ClipInputs:
    """A prepared clip's inputs (``ds``: a :class:`talkface.store.dataset.Dataset`).

    Identity: the image :func:`talkface.store.identity_source.identity_source` names (by default a frame
    of another clip of the same speaker, chosen by :func:`~talkface.core.face68.choose_identity_frame`:
    a closed, neutral mouth, eyes open), from the aligned crops (already aligned the way the models
    expect, so no detection is needed); every method and baseline gets this one. Audio: the corpus'
    source file when it is still there, else the crop's track, fitted to the crop's frame count exactly
    as ``prepare`` fitted it.
    """
    arrays = ds.load_clip(clip_id)
    lm = np.asarray(arrays["landmarks_aligned"], np.float32)
    source = identity_source(ds, clip_id, identity_from)
    chosen = source.frame
    identity_lm = lm if source.clip_id == clip_id else np.asarray(
        ds.load_clip(source.clip_id)["landmarks_aligned"], np.float32)
    crop_path = Path(ds.crop_path(clip_id))
    identity_path = Path(ds.crop_path(source.clip_id))
    frame = next((f for i, f in enumerate(media.iter_frames(identity_path)) if i == chosen), None)
    if frame is None:
        raise media.MediaError(f"{source.clip_id}: crops video has fewer than {chosen + 1} frames")
    fps = ds.fps
    record = ds.record(clip_id)
    n = int(record.n_frames or len(lm))
    if n != len(lm):
        raise ValueError(f"{clip_id}: the manifest says {n} frames, its landmarks have {len(lm)}")
    audio_file = next((str(s) for s in (record.source_audio, record.source_video)
                       if s and Path(str(s)).exists()), None)
    audio = read_speech(audio_file or crop_path)
    audio, _ = media.fit_audio_length(audio, int(round(n / fps * SAMPLE_RATE)))
    return ClipInputs(clip_id=clip_id, n_frames=n, fps=fps, audio=audio, identity_index=chosen,
                      identity_crop=frame, identity_px=identity_lm[chosen].copy(), reference_landmarks=lm,
                      crop_path=crop_path, identity=source)


def apply_calibration(gen: Generator, blink_run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Set the generator's blink amplitude from the blink run's calibration record when it was measured
    with exactly the loaded blink and texture weights; returns what generation records (None: not
    applied)."""
    from talkface.models.blinks import HOLD_FRAMES
    from talkface.store import blink_calibration as record_file

    if gen.blink_model is None or gen.texture is None:
        return None
    path = record_file.calibration_path(blink_run_dir)
    try:
        record = record_file.read_record(blink_run_dir)
    except record_file.CalibrationUnreadable as exc:
        return {"applied": False, "why": str(exc)}
    if record is None:
        return None
    if not record_file.applicable(record):
        return {"applied": False, "why": f"{path}: {record.get('why', 'not applicable')}"}
    loaded = gen.provenance["checkpoints"]
    if not record_file.measured_with(record, loaded["blinks"]["sha256"], loaded["texture"]["sha256"]):
        return {"applied": False, "why": f"{path} was measured with other blink or texture weights"}
    gen.blink_model.config.amplitude = float(record["amplitude"])
    out = {"applied": True, "file": str(path), "amplitude": float(record["amplitude"]),
           "real_blinks_per_min": record.get("real_blinks_per_min"),
           "generated_blinks_per_min": record.get("generated_blinks_per_min"),
           "hold_frames": record_file.hold_frames(record)}
    if out["hold_frames"] != HOLD_FRAMES:  # the amplitude still applies; the rates were measured otherwise
        out["note"] = (f"measured with blinks held {out['hold_frames']} frame(s), generated with "
                       f"{HOLD_FRAMES}: its blink rates are not this generation's")
    return out
