"""Helpers shared by the study tests: tiny source videos and quick exports (no tests of its own but one
check that the tiny videos are what the other tests assume)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkface.core.media import probe_video, write_video

TINY_METHODS = ("alphamethod", "betamethod", "gammamethod")
TINY_CLIPS = ("clipaa", "clipbb", "clipcc", "clipdd")
TINY_FRAMES = 32


def make_tiny_clip(path: Path, seed: int, n_frames: int = TINY_FRAMES, size: int = 64, tone_hz: float = 330.0,
                   amplitude: float = 0.1, audio: bool = True) -> Path:
    """A 64x64 clip of moving coloured blocks at 25 fps with a tone (a few kB, encodes in ms)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)
    frames = [np.kron(np.roll(base, i, axis=0), np.ones((size // 8, size // 8, 1), np.uint8))
              for i in range(n_frames)]
    t = np.arange(int(16000 * n_frames / 25)) / 16000
    sound = (amplitude * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32) if audio else None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, 25, sound)
    return path


def make_tiny_sources(root: Path, methods=TINY_METHODS, clips=TINY_CLIPS) -> dict[str, Path]:
    """One folder of <clip>.mp4 per method; methods differ in picture and loudness (amplitude)."""
    out = {}
    for k, m in enumerate(methods):
        folder = root / f"m{k}"
        for c, clip in enumerate(clips):
            make_tiny_clip(folder / f"{clip}.mp4", seed=100 * k + c, tone_hz=220 + 55 * c,
                           amplitude=0.03 * (k + 1))
        out[m] = folder
    return out


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tiny_sources(tmp_path_factory.mktemp("study_sources"))


def test_tiny_sources_are_small_and_short(tiny_sources):
    info = probe_video(tiny_sources["alphamethod"] / "clipaa.mp4")
    assert (info.width, info.height, info.has_audio) == (64, 64, True)
    assert abs(info.fps - 25) < 1e-6
