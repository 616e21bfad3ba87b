"""Video/audio I/O: decoding against FFmpeg's own converter, frame-rate resampling, round trips."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from talkface.preprocess import media


def test_fast_rgb_conversion_matches_swscale(grid_root: Path, voxceleb_root: Path) -> None:
    for path in (grid_root / "s1" / "bbaf2n.mpg", voxceleb_root / "00015.mp4"):
        ours = media.read_video(path)
        with av.open(str(path)) as container:
            ref = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        diff = np.abs(ours.astype(int) - ref)
        assert ours.shape == ref.shape
        assert diff.mean() < 1.5 and diff.max() <= 12  # rounding and chroma-upsampling differences


def test_resampling_picks_the_nearest_frame_in_time(tmp_path: Path) -> None:
    # 25 frames at 25 fps, frame i filled with value 10 * i: the value names the source frame
    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(25)]
    path = tmp_path / "ramp.mp4"
    media.write_video(path, frames, 25.0, crf=0)
    for fps in (10.0, 29.97, 50.0):
        out = media.read_video(path, fps=fps)
        pos = np.arange(len(out)) / fps * 25  # source position of each output frame
        got_src = np.round(out[:, 16, 16, 0] / 10.0)
        tie = np.isclose(pos % 1, 0.5)  # exactly between two source frames: either is nearest
        nearest = np.minimum(np.floor(pos + 0.5), 24)
        np.testing.assert_array_equal(got_src[~tie], nearest[~tie])
        assert np.allclose(np.abs(got_src[tie] - pos[tie]), 0.5)
        assert abs(len(out) - 25 / 25.0 * fps) <= 1


def test_write_read_round_trip_keeps_frames_and_audio(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (10, 48, 64, 3), dtype=np.uint8)
    t = np.arange(16000) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "clip.mp4"
    assert media.write_video(path, frames, 25.0, audio) == 10
    info = media.probe_video(path)
    assert (info.width, info.height, info.fps, info.has_audio) == (64, 48, 25.0, True)
    back = media.read_audio(path)
    assert abs(len(back) - len(audio)) < 2048  # AAC frame padding
    spectrum = np.abs(np.fft.rfft(back[2048:14000]))
    assert abs(np.argmax(spectrum) * 16000 / len(back[2048:14000]) - 440) < 3


def test_fit_audio_length() -> None:
    audio = np.ones(10, np.float32)
    padded, n = media.fit_audio_length(audio, 15)
    assert n == 5 and len(padded) == 15 and padded[10:].sum() == 0
    cut, n = media.fit_audio_length(audio, 4)
    assert n == 0 and len(cut) == 4


def test_unreadable_files_raise_media_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(media.MediaError, match="bad.mp4"):
        list(media.iter_frames(bad))
    with pytest.raises(media.MediaError, match="bad.mp4"):
        media.read_audio(bad)
