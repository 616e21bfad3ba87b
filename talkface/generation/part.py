"""Generate one method's videos for a part of a prepared dataset: the code of ``generate --data`` and of
every ``baseline``, writing the generated-videos record (:mod:`talkface.store.generated_videos`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from talkface.core import media
from talkface.core.face68 import IDENTITY_RULE
from talkface.generation.generator import VIDEO_CODEC, Generator, clip_inputs, write_video
from talkface.generation.method import Method
from talkface.store.generated_videos import check_same_run, write_record


def generate_part(gen: Generator, method: Method, data: str | os.PathLike, part: str,
                  out_dir: str | os.PathLike, seed: int = 0, protocol: str | None = None,
                  quiet: bool = False) -> dict[str, Any]:
    """One ``<clip_id>.mp4`` per usable clip of ``part`` (train/val/test) of ``protocol`` (the dataset's
    own by default); resumes by skipping existing files.

    A clip that fails is recorded (``OUT/generation.json``, ``failed``) and the run goes on. An output
    folder that holds another method's videos, or videos made with other checkpoints or another seed,
    is refused rather than mixed.
    """
    from talkface.store.dataset import Dataset
    from talkface.utils.lock import WriterLock
    from talkface.utils.progress import make_progress

    if part not in ("train", "val", "test"):
        raise ValueError(f"--part must be train, val or test, not {part!r}")
    ds = Dataset.open(data)
    parts = ds.parts(protocol).require(part)  # DatasetError naming what the protocol holds
    clip_ids = list(parts[part])
    out_dir = Path(out_dir)
    header = {**method.describe(), "identity_frame": IDENTITY_RULE, "data": str(Path(data).resolve()),
              "protocol": parts.protocol,
              "part": part, "seed": seed, "fps": ds.fps, "crop_size": int(ds.crop_size),
              "frame_count_rule": "the reference crop's frame count", "video": VIDEO_CODEC,
              "audio": "the clip's audio (source file, else the crop's track), fitted to the frame count",
              **gen.provenance}
    done, skipped, failed = [], [], {}
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
                else:
                    try:
                        clip = clip_inputs(ds, clip_id)
                        write_video(target, method.frames(gen, clip, seed), clip.audio, clip.fps,
                                    expect_frames=clip.n_frames)
                        done.append(clip_id)
                    except (media.MediaError, ValueError, OSError, KeyError) as exc:  # NoFaceError too
                        failed[clip_id] = f"{type(exc).__name__}: {exc}"
                progress.update(task, advance=1, info=f"{len(failed)} failed")
        finally:
            if not quiet:
                progress.stop()
        summary = {**header, "complete": True, "generated": done, "skipped_existing": skipped,
                   "failed": failed}
        write_record(out_dir, summary)
    return summary
