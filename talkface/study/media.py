"""Stimulus media: every study video re-encoded alike so the encoding gives nothing away.

Each published video is H.264 (yuv420p, x264 at one CRF and preset, one thread: bit-exact for the
same input) with mono AAC at 48 kHz, in an MP4 with the index first (``faststart``), the
muxer's and encoders' version strings switched off (``bitexact``) and no container metadata. Frames
are centre-cropped square, resized to one size and resampled to one frame rate; the audio is set to
one integrated loudness (ITU-R BS.1770-4, gated). Every file is then padded with an MP4 ``free`` box
to one common byte size, so sizes tell nothing either.

Reading uses the project's readers (:mod:`talkface.core.media`); writing needs options that
``write_video`` does not take (48 kHz audio, bitexact, faststart, no metadata), so it lives here.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.signal import lfilter

from talkface.core.media import MediaError, iter_frames, read_audio

SAMPLE_RATE = 48000
PAD_BLOCK = 4096
MIN_FREE_BOX = 8


@dataclass(frozen=True)
class EncodeSettings:
    size: int = 256
    fps: float = 25.0
    crf: int = 20
    preset: str = "medium"
    audio_bitrate: int = 96000
    loudness_lufs: float = -20.0
    check_audio_shift_s: float = 0.5  # attention-check copies: audio delayed by this much
    check_hold_fps: float = 5.0  # ... and the picture held at this rate (choppy)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Loudness (ITU-R BS.1770-4, mono)


def _k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads (high shelf, then high pass) for any sample rate, by the bilinear
    transform of the analogue prototypes (as libebur128 does); at 48 kHz they are the coefficients
    printed in BS.1770-4."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sr)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = np.array([vh + vb * k / q + k * k, 2 * (k * k - vh), vh - vb * k / q + k * k]) / a0
    shelf_a = np.array([a0, 2 * (k * k - 1), 1 - k / q + k * k]) / a0
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sr)
    a0 = 1 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([a0, 2 * (k * k - 1), 1 - k / q + k * k]) / a0
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


def integrated_loudness(samples: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Gated integrated loudness in LUFS of mono samples; ``-inf`` for silence.

    400 ms blocks with 75 % overlap (the whole signal when shorter), absolute gate -70 LUFS,
    relative gate -10 LU. A full-scale 1 kHz sine reads -3.01 LUFS.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    for b, a in _k_weighting(sr):
        x = lfilter(b, a, x)
    block = int(round(0.4 * sr))
    step = block // 4
    if x.size < block:
        powers = np.array([np.mean(x**2)])
    else:
        starts = range(0, x.size - block + 1, step)
        powers = np.array([np.mean(x[s : s + block] ** 2) for s in starts])

    def lufs(p):
        return -0.691 + 10 * np.log10(p) if p > 0 else -math.inf

    with np.errstate(divide="ignore"):
        loud = np.array([lufs(p) for p in powers])
    gated = powers[loud > -70]
    if gated.size == 0:
        return -math.inf
    relative = lufs(gated.mean()) - 10
    gated = powers[(loud > -70) & (loud > relative)]
    return float(lufs(gated.mean())) if gated.size else -math.inf


def normalise_loudness(samples: np.ndarray, target_lufs: float, sr: int = SAMPLE_RATE) -> tuple[
    np.ndarray, dict
]:
    """Scale to ``target_lufs``; peaks are kept under -1 dBFS by lowering the gain (then noted)."""
    measured = integrated_loudness(samples, sr)
    info = {"measured_lufs": None if math.isinf(measured) else round(measured, 2), "gain_db": 0.0,
            "peak_limited": False}
    if math.isinf(measured):
        return np.asarray(samples, dtype=np.float32), info
    gain_db = target_lufs - measured
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    ceiling = 10 ** (-1 / 20)
    if peak > 0 and peak * 10 ** (gain_db / 20) > ceiling:
        gain_db = 20 * math.log10(ceiling / peak)
        info["peak_limited"] = True
    info["gain_db"] = round(gain_db, 2)
    return (np.asarray(samples, dtype=np.float64) * 10 ** (gain_db / 20)).astype(np.float32), info


# --------------------------------------------------------------------------------------------------
# Reading and shaping


def square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize (area filter when shrinking, cubic when enlarging)."""
    h, w = frame.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = frame[y0 : y0 + s, x0 : x0 + s]
    if s == size:
        return np.ascontiguousarray(sq)
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(sq, (size, size), interpolation=interp)


def load_frames(path: str | os.PathLike, fps: float, size: int) -> np.ndarray:
    """All frames of a short clip at ``fps``, square, ``size`` pixels: (T, size, size, 3) uint8."""
    frames = [square_resize(f, size) for f in iter_frames(path, fps=fps)]
    return np.stack(frames)


def load_audio(path: str | os.PathLike) -> np.ndarray | None:
    """The clip's mono audio at 48 kHz, or ``None`` when it has no audio track."""
    try:
        return read_audio(path, sr=SAMPLE_RATE)
    except MediaError as exc:
        if "no audio stream" in str(exc):
            return None
        raise


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    if len(audio) >= n:
        return audio[:n]
    return np.concatenate([audio, np.zeros(n - len(audio), dtype=audio.dtype)])


def degrade(frames: np.ndarray, audio: np.ndarray, settings: EncodeSettings) -> tuple[np.ndarray,
                                                                                       np.ndarray]:
    """An attention-check copy: audio delayed by ``check_audio_shift_s`` (same length), picture
    held at ``check_hold_fps`` (each frame repeated), so lip sync and smoothness are clearly worse."""
    hold = max(2, int(round(settings.fps / settings.check_hold_fps)))
    idx = (np.arange(len(frames)) // hold) * hold
    shift = int(round(settings.check_audio_shift_s * SAMPLE_RATE))
    delayed = np.concatenate([np.zeros(shift, dtype=np.float32), audio])[: len(audio)]
    return frames[idx], delayed


# --------------------------------------------------------------------------------------------------
# Writing


def encode(path: str | os.PathLike, frames: np.ndarray, audio: np.ndarray, settings: EncodeSettings) -> None:
    """Write H.264 + AAC MP4 with no metadata, bit-exact, index first."""
    rate = Fraction(settings.fps).limit_denominator(1001)
    bitexact = av.codec.context.Flags.bitexact
    with av.open(str(path), mode="w", format="mp4",
                 container_options={"movflags": "+faststart", "fflags": "+bitexact"}) as container:
        vstream = container.add_stream("libx264", rate=rate)
        vstream.width = vstream.height = settings.size
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": str(settings.crf), "preset": settings.preset, "threads": "1"}
        vstream.codec_context.flags |= bitexact
        astream = container.add_stream("aac", rate=SAMPLE_RATE)
        astream.layout = "mono"
        astream.bit_rate = settings.audio_bitrate
        astream.codec_context.flags |= bitexact
        for s in (vstream, astream):
            s.metadata.clear()
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in vstream.encode(vf):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        samples = np.clip(np.asarray(audio, dtype=np.float32), -1, 1).reshape(1, -1)
        step = 1024 * 16
        for start in range(0, samples.shape[1], step):
            chunk = np.ascontiguousarray(samples[:, start : start + step])
            af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            af.sample_rate = SAMPLE_RATE
            af.pts = start
            for packet in astream.encode(af):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)


def common_size(sizes: list[int]) -> int:
    """The byte size every file is padded to: room for a ``free`` box on the largest, rounded up."""
    return int(math.ceil((max(sizes) + MIN_FREE_BOX) / PAD_BLOCK) * PAD_BLOCK)


def pad_mp4(path: str | os.PathLike, size: int) -> None:
    """Append one top-level ``free`` box of zeros so the file is exactly ``size`` bytes (players skip
    ``free`` boxes; ISO/IEC 14496-12 allows them at top level anywhere)."""
    path = Path(path)
    current = path.stat().st_size
    extra = size - current
    if extra == 0:
        return
    if extra < MIN_FREE_BOX:
        raise ValueError(f"{path}: cannot pad {current} to {size} bytes (a free box needs 8)")
    with open(path, "ab") as fh:
        fh.write(struct.pack(">I4s", extra, b"free"))
        fh.write(b"\0" * (extra - MIN_FREE_BOX))
