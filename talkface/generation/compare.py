"""Side-by-side comparison video: methods tiled left to right, each name drawn above its tile.

``talkface compare real=D/crops ours=out/ours static=out/static --clip s1_bbaf2n --out cmp.mp4``

- An input is ``NAME=PATH`` or a bare ``PATH`` (named after its file or folder). The name may hold
  spaces and ``=`` exactly as ``evaluate --method`` accepts them: the ``=`` that ends the name is the
  one after which an existing path follows (:func:`talkface.utils.names.split_name_path`; an argument
  that reads two ways is refused), and names follow the names rule (no control characters, no white
  space at either end). The name is drawn as given, its letters folded to ASCII for OpenCV's font
  (``é`` -> ``e``; other characters as ``?``).
- A PATH is a video file, or a folder of ``<clip_id>.mp4`` (then ``--clip`` picks the clip: a file
  name in the folder, never a path); a prepared dataset folder stands for its reference crops
  (``D/crops``). Only ``--out`` is written.
- Tiles all have the first input's frame size (others are resized to it); the name bar above them is
  ``label_height(tile)`` pixels high.
- One audio track: the first input's (or, when it has none, the first input that has one), cut to the
  video's length. Frame count: the shortest input's; inputs whose lengths differ by more than one
  frame are refused (a method must not look better for being cut short), as are inputs at different
  frame rates.
- Written with the codec and quality generation uses (:func:`talkface.generation.generator.write_video`).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from talkface.core import media
from talkface.generation.generator import SAMPLE_RATE, write_video
from talkface.utils.names import check_name, inside, split_name_path

MAX_FRAME_DIFFERENCE = 1


@dataclass(frozen=True)
class Input:
    name: str
    path: Path  # the video file


def parse_inputs(specs: Sequence[str], exists=os.path.exists) -> list[tuple[str, Path]]:
    """``["real=D/crops", "out/ours"]`` -> ``[("real", D/crops), ("ours", out/ours)]`` (a bare path is
    named after its file or folder; ``our s=x=out/ours`` is named ``our s=x`` when ``out/ours`` exists
    and ``x=out/ours`` does not)."""
    out = []
    for spec in specs:
        name, path = split_name_path(spec, exists)
        if name is None:
            name = Path(path).stem or Path(path).name
        out.append((check_name(name, "input name"), Path(path)))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"two inputs share a name ({', '.join(names)}): name them, e.g. real=PATH ours=PATH")
    if len(out) < 1:
        raise ValueError("give at least one NAME=PATH input")
    return out


def resolve_inputs(specs: Sequence[tuple[str, os.PathLike]], clip: str | None = None) -> list[Input]:
    """Each (name, path) as a video file: a file itself, a folder's ``<clip>.mp4``, a dataset's crop."""
    out = []
    for name, path in specs:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"{name}: {path} does not exist")
        if path.is_dir():
            folder = path / "crops" if (path / "crops").is_dir() else path
            if clip is None:
                raise ValueError(f"{name}: {path} is a folder: pass --clip ID to pick <ID>.mp4 in it")
            video = inside(folder, f"{clip}.mp4")
            if not video.exists():
                have = sorted(p.stem for p in folder.glob("*.mp4"))
                shown = ", ".join(have[:5]) + (", ..." if len(have) > 5 else "") if have else "no videos"
                raise ValueError(f"{name}: {folder} has no {clip}.mp4 (it holds {shown})")
            path = video
        out.append(Input(name, path))
    return out


def label_height(tile_height: int) -> int:
    """Height of the name bar above a tile: a sixth of the tile, at least 20 px, even."""
    h = max(20, tile_height // 6)
    return h + h % 2


def drawable(text: str) -> str:
    """``text`` in the characters OpenCV's Hershey font draws: letters folded to ASCII (``é`` -> ``e``),
    anything else ``?``."""
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in folded if not unicodedata.combining(c))


def draw_label(width: int, height: int, text: str) -> np.ndarray:
    """A black (height, width, 3) bar with ``text`` in white, centred, scaled to fit."""
    text = drawable(text)
    bar = np.zeros((height, width, 3), np.uint8)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    scale = height / 30.0
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    if tw > width - 4:
        scale *= (width - 4) / tw
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    org = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(bar, text, org, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return bar


def _count_frames(path: Path) -> int:
    return sum(1 for _ in media.iter_frames(path))


def compare_videos(inputs: Sequence[Input], out: str | os.PathLike) -> dict[str, Any]:
    """Write the tiled video; return what was made (frame count, tile size, audio source)."""
    if not inputs:
        raise ValueError("nothing to compare")
    infos = [media.probe_video(i.path) for i in inputs]
    fps = infos[0].fps
    for inp, info in zip(inputs, infos, strict=True):
        if abs(info.fps - fps) > 1e-3:
            raise ValueError(f"{inp.name} runs at {info.fps:g} fps, {inputs[0].name} at {fps:g} fps: "
                             "compare videos of one frame rate")
    counts = {i.name: _count_frames(i.path) for i in inputs}
    n = min(counts.values())
    if max(counts.values()) - n > MAX_FRAME_DIFFERENCE:
        listed = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise ValueError(f"the inputs' frame counts differ by more than {MAX_FRAME_DIFFERENCE} ({listed}): "
                         "they are not videos of the same clip")
    tile_h, tile_w = infos[0].height, infos[0].width
    bar_h = label_height(tile_h)
    labels = [draw_label(tile_w, bar_h, i.name) for i in inputs]
    audio, audio_from = None, None
    for inp, info in zip(inputs, infos, strict=True):
        if info.has_audio:
            audio, audio_from = media.read_audio(inp.path, SAMPLE_RATE), inp.name
            audio, _ = media.fit_audio_length(audio, int(round(n / fps * SAMPLE_RATE)))
            break

    def tiles() -> Iterator[np.ndarray]:
        streams = [media.iter_frames(i.path) for i in inputs]
        for _ in range(n):
            columns = []
            for stream, label in zip(streams, labels, strict=True):
                frame = next(stream)
                if frame.shape[:2] != (tile_h, tile_w):
                    frame = cv2.resize(frame, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
                columns.append(np.concatenate([label, frame], axis=0))
            yield np.concatenate(columns, axis=1)

    written = write_video(out, tiles(), audio, fps, expect_frames=n)
    return {"out": str(out), "n_frames": written, "fps": fps, "frame_counts": counts,
            "tile": [tile_w, tile_h], "label_height": bar_h, "size": [tile_w * len(inputs), tile_h + bar_h],
            "audio_from": audio_from, "methods": [i.name for i in inputs]}
