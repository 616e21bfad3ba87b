"""Generate one method's videos for a part of a prepared dataset: the code of ``generate --data`` and of
every ``baseline``, writing the generated-videos record (:mod:`talkface.store.generated_videos`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from talkface.core import media
from talkface.core.face68 import IDENTITY_RULE
from talkface.generation.generator import VIDEO_CODEC, Generator, clip_inputs, write_video
from talkface.generation.method import CLIP_SEED_RULE, Method, clip_seed
from talkface.store.generated_videos import check_same_run, write_record
from talkface.store.identity_source import (
    DEFAULT_IDENTITY_FROM,
    IDENTITY_RULES,
    check_identity_from,
    identity_source,
)


def generate_part(gen: Generator, method: Method, data: str | os.PathLike, part: str,
                  out_dir: str | os.PathLike, seed: int = 0, protocol: str | None = None,
                  quiet: bool = False, identity_from: str = DEFAULT_IDENTITY_FROM) -> dict[str, Any]:
    """One ``<clip_id>.mp4`` per usable clip of ``part`` (train/val/test) of ``protocol`` (the dataset's
    own by default); resumes by skipping existing files. ``identity_from``: where each clip's identity
    image comes from (:mod:`talkface.store.identity_source`); recorded with every clip's source.

    A clip that fails is recorded (``OUT/generation.json``, ``failed``) and the run goes on. An output
    folder that holds another method's videos, or videos made with other checkpoints or another seed,
    is refused rather than mixed.
    """
    from talkface.store.dataset import Dataset
    from talkface.utils.lock import WriterLock
    from talkface.utils.progress import make_progress

    check_identity_from(identity_from)
    if part not in ("train", "val", "test"):
        raise ValueError(f"--part must be train, val or test, not {part!r}")
    ds = Dataset.open(data)
    parts = ds.parts(protocol).require(part)  # DatasetError naming what the protocol holds
    clip_ids = list(parts[part])
    out_dir = Path(out_dir)
    header = {**method.describe(), "identity_frame": IDENTITY_RULE, "identity_from": identity_from,
              "identity_rule": IDENTITY_RULES[identity_from], "data": str(Path(data).resolve()),
              "protocol": parts.protocol,
              "part": part, "seed": seed, "blink_seed_rule": CLIP_SEED_RULE, "fps": ds.fps,
              "crop_size": int(ds.crop_size),
              "frame_count_rule": "the reference crop's frame count", "video": VIDEO_CODEC,
              "audio": "the clip's audio (source file, else the crop's track), fitted to the frame count",
              **gen.provenance}
    done, skipped, failed = [], [], {}
    sources: dict[str, dict[str, Any]] = {}
    with WriterLock(out_dir, f"{method.name} videos"):
        check_same_run(out_dir, header)
        write_record(out_dir, {**header, "complete": False})
        progress = make_progress()
        if not quiet:
            progress.start()
        try:
            task = progress.add_task(f"{method.name} {part}", total=len(clip_ids), info="")
            for clip_id in clip_ids:
                target = out_dir / f"{clip_id}.mp4"
                if target.exists():
                    skipped.append(clip_id)
                    sources[clip_id] = identity_source(ds, clip_id, identity_from).to_dict()
                else:
                    try:
                        clip = clip_inputs(ds, clip_id, identity_from)
                        sources[clip_id] = clip.identity.to_dict()
                        frames = method.frames(gen, clip, clip_seed(seed, clip_id))
                        write_video(target, frames, clip.audio, clip.fps, expect_frames=clip.n_frames)
                        done.append(clip_id)
                    except (media.MediaError, ValueError, OSError, KeyError) as exc:  # NoFaceError too
                        failed[clip_id] = f"{type(exc).__name__}: {exc}"
                progress.update(task, advance=1, info=f"{len(failed)} failed")
        finally:
            if not quiet:
                progress.stop()
        same = sorted(c for c, s in sources.items() if "identity_same_clip" in s["flags"])
        summary = {**header, "complete": True, "generated": done, "skipped_existing": skipped,
                   "failed": failed, "identity_sources": sources, "identity_same_clip": same}
        write_record(out_dir, summary)
    return summary
