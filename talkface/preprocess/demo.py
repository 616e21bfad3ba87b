"""``make demo``: a complete preparation run on an example made from data inside the dependencies.

scikit-image ships a public-domain portrait (``skimage.data.astronaut()``, NASA). The demo turns it into a
2-second 25 fps clip with gentle head motion and a synthetic voiced sound (a harmonic tone whose pitch and
loudness move like speech syllables), prepares it with the generic folder recipe, and draws an
inspection PNG. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from talkface.preprocess import media


def synth_voice(seconds: float, sr: int = media.AUDIO_RATE, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: 4 syllables/s of a harmonic tone (f0 110-150 Hz) with formant-ish tilt."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 130 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 1.5  # syllables, with pauses
    noise = 0.01 * rng.standard_normal(len(t))
    return (0.25 * voice * envelope / np.abs(voice).max() + noise).astype(np.float32)


def make_example_clip(path: Path, seconds: float = 2.0, fps: float = 25.0, size: int = 256) -> Path:
    from skimage import data

    portrait = data.astronaut()  # 512x512 RGB
    n = int(seconds * fps)
    frames = []
    for i in range(n):
        angle = 2.0 * np.sin(2 * np.pi * i / n)
        shift = 4.0 * np.sin(4 * np.pi * i / n)
        m = cv2.getRotationMatrix2D((256, 200), angle, 1.0)
        m[0, 2] += shift
        moved = cv2.warpAffine(portrait, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(moved, (size, size), interpolation=cv2.INTER_AREA))
    path.parent.mkdir(parents=True, exist_ok=True)
    media.write_video(path, frames, fps, synth_voice(seconds))
    return path


def run_demo(out: Path) -> None:
    from talkface.preprocess.corpora import get_recipe
    from talkface.preprocess.inspect import render_inspection
    from talkface.preprocess.pipeline import PrepareConfig, run_prepare
    from talkface.store.dataset import Dataset
    from talkface.store.dataset_writer import DatasetStore
    from talkface.utils.progress import console

    out = Path(out)
    videos = out / "videos" / "astronaut"
    clip = make_example_clip(videos / "example.mp4")
    console.print(f"example clip: {clip}")
    sources = get_recipe("folder").discover(out / "videos").clips
    store = DatasetStore(out / "prepared")
    summary = run_prepare(sources, store, PrepareConfig(), workers=1)
    row = Dataset.open(store.root).records()[0]
    console.print(f"prepared {summary.prepared} clip(s): status {row.status}, {row.n_frames} frames")
    if row.status == "failed":
        console.print(f"[red]demo failed: {row.error}[/red]")
        raise SystemExit(1)
    png = render_inspection(store.root, row.clip_id, None, out / "inspect.png")
    console.print(f"dataset:   {store.root} (manifest.parquet, clips/, crops/)")
    console.print(f"inspect:   {png}")
