"""Generation: speech + one identity image -> a talking-face mp4 (the four stages chained).

wav (any rate, read at 16 kHz mono) -> speech features (the backend the landmark checkpoint's dataset
was prepared with) -> person-independent landmarks -> generated blinks replace the eye points ->
retargeted to the identity's aligned landmarks -> landmark images -> texture generator -> 128x128
frames -> H.264 mp4 with the input audio muxed in (AAC).

Frame count: ``ceil(duration_s * fps)`` at 25 fps, so the video covers the whole utterance (the last
frame overlaps the audio end by less than one frame period).

Everything happens in the aligned crop frame: the identity image is aligned to the canonical template
exactly as prepared crops are (similarity fitted on the stable points), so its landmarks live where
the models' landmarks live.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talkface import __version__
from talkface.models.fabric_loop import find_stage_checkpoint, load_checkpoint
from talkface.models.render import render_batch, to_model_range
from talkface.models.texture import TextureConfig, TextureGenerator
from talkface.models.texture_train import load_texture_stage
from talkface.preprocess import media
from talkface.preprocess.landmarks.base import NoFaceError
from talkface.utils import atomic
from talkface.utils.provenance import sha256_file

FPS = 25.0
SAMPLE_RATE = 16000


def n_frames_for(n_samples: int, sr: int = SAMPLE_RATE, fps: float = FPS) -> int:
    """``ceil(duration * fps)`` (at least 1), with a tolerance so 48000 samples give exactly 75."""
    return max(1, math.ceil(n_samples * fps / sr - 1e-6))


# -------------------------------------------------------------------------------------------------
# the models


@dataclass
class Generator:
    """The three trained stages plus the feature backend, ready to run on ``device``."""

    landmark_model: Any
    mean_face: np.ndarray  # (68, 2) unit coordinates
    blink_model: Any
    texture: TextureGenerator
    texture_config: TextureConfig
    features: Any  # FeatureBackend
    device: torch.device
    batch_size: int = 32
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.texture_config.image_size


def load_generator(checkpoints: str | os.PathLike, device: str = "auto", deepspeech_model: str | None = None,
                   batch_size: int | None = None) -> Generator:
    """Find and load the landmarks, blinks and texture checkpoints under ``checkpoints``."""
    from talkface.models.blinks import load_blink_stage
    from talkface.models.speech_to_landmarks import load_landmark_stage

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    paths = {s: find_stage_checkpoint(checkpoints, s) for s in ("landmarks", "blinks", "texture")}
    lm_model, lm_config, mean_face = load_landmark_stage(paths["landmarks"], dev)
    blink = load_blink_stage(paths["blinks"], dev)
    texture, tex_config, _ = load_texture_stage(paths["texture"], dev)
    texture = texture.to(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
    features = _feature_backend(load_checkpoint(paths["landmarks"]), lm_config, deepspeech_model)
    prov = {
        "talkface_version": __version__,
        "checkpoints": {s: {"path": str(p), "sha256": sha256_file(p)} for s, p in paths.items()},
        "feature_backend": features.settings(),
        "fps": FPS,
        "frame_count_rule": "ceil(duration_s * fps)",
        "image_size": tex_config.image_size,
    }
    return Generator(lm_model, np.asarray(mean_face, np.float32), blink, texture, tex_config, features, dev,
                     batch_size or (64 if dev.type == "cuda" else 16), prov)


def _feature_backend(lm_ckpt: dict[str, Any], lm_config: Any, deepspeech_model: str | None) -> Any:
    """The backend the landmark model was trained on, checked against the dataset's recorded settings."""
    from talkface.preprocess.features import get_feature_backend

    ds = (lm_ckpt.get("dataset") or {}).get("settings") or {}
    name = getattr(lm_config, "feature_backend", "") or ds.get("feature_backend") or "logmel"
    recorded = ds.get("feature_options") or {}
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
# identity


def align_identity(image: np.ndarray, size: int, landmark_backend: Any = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The aligned ``size`` crop of an RGB identity image and its 68 landmarks in crop pixels.

    Raises :class:`NoFaceError` when dlib finds no face, ``ValueError`` when it finds several.
    """
    import dlib

    from talkface.preprocess.alignment import (
        STABLE_POINTS,
        apply_transform,
        estimate_similarity,
        load_template,
        warp_crop,
    )
    from talkface.preprocess.landmarks import get_landmark_backend

    image = np.ascontiguousarray(image)
    backend = landmark_backend or get_landmark_backend("dlib")
    points = backend.detect(image)
    if points is None:
        raise NoFaceError("no face found in the identity image: give a photo with one clearly visible, "
                          "roughly frontal face (dlib HOG detector)")
    _, scores, _ = dlib.get_frontal_face_detector().run(image, 0, 0)
    n_faces = sum(s > 0.0 for s in scores)
    if n_faces > 1:
        raise ValueError(f"the identity image holds {n_faces} faces: crop it to one face")
    stable = list(STABLE_POINTS)
    transform = estimate_similarity(points[stable], load_template(size)[stable])
    return warp_crop(image, transform, size), apply_transform(points, transform)


def read_identity_image(path: str | os.PathLike) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image (png, jpg, ...)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# -------------------------------------------------------------------------------------------------
# the pipeline


def target_landmarks(gen: Generator, audio: np.ndarray, identity_px: np.ndarray, seed: int = 0) -> np.ndarray:
    """(T, 68, 2) target landmarks in texture-crop pixels for 16 kHz ``audio``."""
    feats = gen.features.compute(audio, n_frames=n_frames_for(len(audio)), fps=FPS)
    return landmarks_from_features(gen, feats, identity_px, seed)


def landmarks_from_features(gen: Generator, feats: np.ndarray, identity_px: np.ndarray, seed: int = 0
                            ) -> np.ndarray:
    """Stages 1-3 on (T, W, D) features: speech landmarks, blinks imposed, retargeted (crop pixels)."""
    from talkface.models.blinks import impose_blinks
    from talkface.models.retarget import retarget
    from talkface.models.speech_to_landmarks import predict_landmarks

    unit = predict_landmarks(gen.landmark_model, feats)
    eyes = gen.blink_model.sample(len(unit), FPS, generator_seed=seed)
    unit = impose_blinks(unit, eyes)
    target = retarget(unit, gen.mean_face, identity_px / gen.size)
    return target * np.float32(gen.size)


@torch.inference_mode()
def render_frames(gen: Generator, identity_crop: np.ndarray, landmarks_px: np.ndarray
                  ) -> Iterator[np.ndarray]:
    """Texture generator over batches of landmark images; yields (size, size, 3) uint8 frames."""
    ident = torch.from_numpy(to_model_range(identity_crop[None])).to(gen.device)
    fmt = torch.channels_last
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if gen.device.type == "cuda" else _nullcontext()
    for start in range(0, len(landmarks_px), gen.batch_size):
        chunk = landmarks_px[start:start + gen.batch_size]
        sketches = render_batch(chunk, gen.texture_config.render_settings)
        lm = torch.from_numpy(to_model_range(sketches)).to(gen.device).contiguous(memory_format=fmt)
        idb = ident.expand(len(lm), -1, -1, -1).contiguous(memory_format=fmt)
        with autocast:
            frames = gen.texture(idb, lm).frame
        out = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        yield from out.permute(0, 2, 3, 1).cpu().numpy()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def generate_video(gen: Generator, audio: np.ndarray, identity_crop: np.ndarray, identity_px: np.ndarray,
                   out: str | os.PathLike, seed: int = 0) -> dict[str, Any]:
    """Write one talking-face mp4 (atomic) with ``audio`` (16 kHz mono) muxed in; return its record."""
    landmarks = target_landmarks(gen, audio, identity_px, seed)
    with atomic.atomic_path(out) as tmp:
        n = media.write_video(tmp, render_frames(gen, identity_crop, landmarks), FPS, audio=audio,
                              sr=SAMPLE_RATE)
    return {"out": str(out), "n_frames": n, "duration_s": len(audio) / SAMPLE_RATE, "seed": seed,
            **gen.provenance}


def generate_from_files(gen: Generator, audio_path: str | os.PathLike, identity_path: str | os.PathLike,
                        out: str | os.PathLike, seed: int = 0) -> dict[str, Any]:
    """``talkface generate --audio --identity``: the single-video form."""
    audio = media.read_audio(audio_path, SAMPLE_RATE)
    crop, points = align_identity(read_identity_image(identity_path), gen.size)
    record = generate_video(gen, audio, crop, points, out, seed)
    record.update(audio=str(audio_path), identity=str(identity_path))
    return record


# -------------------------------------------------------------------------------------------------
# the split form


def clip_inputs(store: Any, clip_id: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(16 kHz audio, identity crop, its landmarks in crop px) of a prepared clip.

    Identity: the clip's first frame with landmarks, from its aligned crops (already aligned the way
    the models expect, so no detection is needed). Audio: the source file, else the crop's track.
    """
    import cv2

    row = store.read_manifest().set_index("clip_id").loc[clip_id]
    arrays = store.load_clip(clip_id)
    lm = np.asarray(arrays["landmarks_aligned"], np.float32)
    valid = np.flatnonzero(np.isfinite(lm).all(axis=(1, 2)))
    if not len(valid):
        raise NoFaceError(f"{clip_id}: no frame with landmarks to take the identity from")
    first = int(valid[0])
    frame = None
    for i, f in enumerate(media.iter_frames(store.crop_path(clip_id))):
        if i == first:
            frame = f
            break
    if frame is None:
        raise media.MediaError(f"{clip_id}: crops video has fewer than {first + 1} frames")
    points = lm[first]
    if frame.shape[0] != size:
        points = points * np.float32(size / frame.shape[0])
        frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    source = row.get("source_audio") or row.get("source_video")
    audio_path = source if source and Path(str(source)).exists() else store.crop_path(clip_id)
    return media.read_audio(audio_path, SAMPLE_RATE), frame, points


def generate_split(gen: Generator, data: str | os.PathLike, part: str, out_dir: str | os.PathLike,
                   seed: int = 0, split: str = "seen", quiet: bool = False) -> dict[str, Any]:
    """One ``<clip_id>.mp4`` per clip of ``part`` (train/val/test); resumes by skipping existing files.

    A clip that fails is recorded (``OUT/generation.json``, ``failed``) and the run goes on.
    """
    from talkface.models.data import select_clips
    from talkface.preprocess.store import DatasetStore
    from talkface.utils.progress import make_progress

    store = DatasetStore(Path(data))
    clip_ids = select_clips(store, split, seed)[part]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, skipped, failed = [], [], {}
    progress = make_progress()
    if not quiet:
        progress.start()
    try:
        task = progress.add_task(f"generate {part}", total=len(clip_ids), info="")
        for clip_id in clip_ids:
            target = out_dir / f"{clip_id}.mp4"
            if target.exists():
                skipped.append(clip_id)
            else:
                try:
                    audio, crop, points = clip_inputs(store, clip_id, gen.size)
                    generate_video(gen, audio, crop, points, target, seed)
                    done.append(clip_id)
                except (media.MediaError, NoFaceError, ValueError, OSError, KeyError) as exc:
                    failed[clip_id] = f"{type(exc).__name__}: {exc}"
            progress.update(task, advance=1, info=f"{len(failed)} failed")
    finally:
        if not quiet:
            progress.stop()
    summary = {"data": str(data), "split": split, "part": part, "seed": seed, "generated": done,
               "skipped_existing": skipped, "failed": failed, **gen.provenance}
    atomic.write_json(out_dir / "generation.json", summary)
    return summary
