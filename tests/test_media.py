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
    assert len(back) == len(audio)  # the AAC priming and last-frame padding are dropped
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


def _write_m4a(path: Path, audio: np.ndarray, sr: int) -> None:
    """AAC in an .m4a (MP4) container, as phones and ``ffmpeg -c:a aac`` write speech."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sr)
        stream.layout = "mono"
        pts = 0
        for start in range(0, len(audio), 4096):
            chunk = np.ascontiguousarray(audio[start : start + 4096].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate, frame.pts = sr, pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_m4a_decodes_to_its_own_duration(tmp_path: Path, grid_root: Path, sr: int) -> None:
    """An .m4a of 2.978 s used to decode to 3.008 s or more (AAC padding counted as speech), so
    ``generate --audio`` made frames for sound that is not there."""
    from scipy.signal import resample_poly

    speech = media.read_audio(grid_root / "s1" / "bbaf2n.mpg")  # 47,648 samples = 2.978 s
    source = speech if sr == 16000 else resample_poly(speech, sr // 100, 160).astype(np.float32)
    path = tmp_path / "speech.m4a"
    _write_m4a(path, source, sr)
    with av.open(str(path)) as container:  # the container's own statement of the duration
        stream = container.streams.audio[0]
        declared = float(stream.duration * stream.time_base)
    assert abs(declared - len(source) / sr) < 1e-3
    back = media.read_audio(path)
    assert abs(len(back) - len(speech)) <= 1, (len(back), len(speech))
    assert round(len(back) / media.AUDIO_RATE * 25) == round(2.978 * 25) == 74
    # nothing shifted: the decoded speech lines up with the source at lag 0
    n = min(len(back), len(speech))
    lags = range(-1100, 1101, 50)
    corr = [np.dot(back[max(0, k): n + min(0, k)], speech[max(0, -k): n - max(0, k)]) for k in lags]
    assert list(lags)[int(np.argmax(corr))] == 0
