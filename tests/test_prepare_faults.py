"""Faults a new user found on GRID clips the project never saw (issue 21), each against an independent
reference: an upside-down copy of a clip (a face turned over is no face, whatever the fit looks
like), silence against the fixtures' speech, a hand-made sine with one packet that does not decode,
a hand-made video with frames missing, and the damaged high-quality clip ``bbaf2a.mpg``."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from needs import require_path

from talkface.core import media
from talkface.core.features import SILENT_AUDIO_DBFS, audio_level_dbfs, is_silent
from talkface.core.landmarks.base import implausible_frames, upside_down, upside_down_frames
from talkface.prepare.corpora.base import ClipSource
from talkface.prepare.run import ClipTools, PrepareConfig, prepare_clip, run_prepare
from talkface.store.dataset import ClipRecord, is_usable, usable_mask
from talkface.store.dataset_writer import DatasetStore


@pytest.fixture(scope="module")
def tools() -> ClipTools:
    return ClipTools(PrepareConfig())


def _prepare(video: Path, store: DatasetStore, tools: ClipTools) -> dict:
    source = ClipSource(clip_id=video.stem, corpus="test", speaker="x", split="train", source_video=video)
    return prepare_clip(source, store, tools)


# ---------------------------------------------------------------------------------------------
# 1. Upside-down faces: dlib fits an upright face on an inverted head (eyes on the eyes, the mouth on
# the forehead), a fit no geometric bound refuses. The reference is the copy itself: every frame of a
# turned-over clip shows an upside-down head, so every frame accepted with landmarks is wrong.

TURNS = {"rotate_180": lambda f: f[:, ::-1, ::-1], "vertical_flip": lambda f: f[:, ::-1]}


@pytest.mark.parametrize(("clip", "turn"), [
    ("bbwg3a", "rotate_180"),  # was: 75 of 75 frames found, the mouth on the forehead
    ("prbd1s", "vertical_flip"),  # was: 74 of 75
    ("bgau1a", "rotate_180"),  # was: 25, a fit on the lower half of the head (both scores low)
])
def test_upside_down_copies_get_no_landmarks(grid_root: Path, clip: str, turn: str) -> None:
    from talkface.core.landmarks import get_landmark_backend

    frames = media.read_video(grid_root / "s1" / f"{clip}.mpg")
    backend = get_landmark_backend("dlib")
    track = backend.track(np.ascontiguousarray(TURNS[turn](frames)))
    reasons = implausible_frames(track.points, track.face_found, track.orientation)
    accepted = track.face_found.copy()
    for mask in reasons.values():
        accepted &= ~mask
    assert accepted.sum() == 0, np.flatnonzero(accepted)
    assert track.rejected.get("upside_down", 0) > 0
    # the same clip upright: every frame keeps its face (no upright frame refused)
    upright = backend.track(frames)
    reasons = implausible_frames(upright.points, upright.face_found, upright.orientation)
    assert upright.face_found.all() and not any(mask.any() for mask in reasons.values())
    measured = np.isfinite(upright.orientation).all(axis=1)
    assert measured.sum() >= len(frames) // 5  # every detection and every 5th tracked frame
    assert not upside_down(upright.orientation[measured, 0], upright.orientation[measured, 1]).any()


def test_upside_down_copy_is_not_prepared(grid_root: Path, tmp_path: Path, tools: ClipTools) -> None:
    """The issue's run: an upside-down copy written as a video came out ``partial`` with 50 frames."""
    frames = media.read_video(grid_root / "s1" / "bbwg3a.mpg")
    audio = media.read_audio(grid_root / "s1" / "bbwg3a.mpg")
    video = tmp_path / "turned.mp4"
    media.write_video(video, frames[:, ::-1, ::-1], 25.0, audio)
    store = DatasetStore(tmp_path / "ds")
    row = _prepare(video, store, tools)
    assert row["status"] == "failed" and "upside down" in row["error"], row
    assert "rejected_faces=" in row["flags"] and not store.clip_path("turned").exists()


def test_orientation_rule_and_its_reach() -> None:
    """Hand-made scores: measured frames by the rule, unmeasured ones by the nearest measurements."""
    assert upside_down(0.1, 1.2) and upside_down(0.3, 0.05) and not upside_down(2.0, -0.5)
    assert not upside_down(-1.4, -0.9)  # neither way a face (a profile, a hand): not this check's call
    assert not upside_down(float("nan"), 1.0)
    n = 20
    o = np.full((n, 2), np.nan)
    o[0] = (2.0, -0.6)  # upright
    o[5] = (2.1, -0.5)  # upright
    o[10] = (-0.2, 1.1)  # upside down
    o[19] = (1.9, -0.4)
    bad = upside_down_frames(o, n, reach=4)
    assert np.flatnonzero(bad).tolist() == [6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert not upside_down_frames(None, n).any()
    # an upright-looking 68-point set: the geometry passes, the orientation does not
    face = _face68()
    points = np.repeat(face[None], n, axis=0)
    reasons = implausible_frames(points, orientation=o)
    assert reasons["upside_down"].tolist() == bad.tolist()
    assert not any(reasons[k].any() for k in reasons if k != "upside_down")


def _face68() -> np.ndarray:
    """A plausible frontal 68-point face, drawn by hand (eye distance 40 px)."""
    p = np.zeros((68, 2))
    jaw = np.linspace(np.pi, 0, 17)  # image left, round under the chin, image right
    p[0:17] = np.c_[100 + 45 * np.cos(jaw), 80 + 85 * np.sin(jaw)]
    p[17:22] = np.c_[np.linspace(65, 92, 5), np.full(5, 68)]
    p[22:27] = np.c_[np.linspace(108, 135, 5), np.full(5, 68)]
    p[27:31] = np.c_[np.full(4, 100), np.linspace(80, 100, 4)]
    p[31:36] = np.c_[np.linspace(90, 110, 5), np.full(5, 104)]
    eye = np.array([[-8, 0], [-4, -3], [4, -3], [8, 0], [4, 3], [-4, 3]], float)
    p[36:42] = eye + (80, 80)
    p[42:48] = eye + (120, 80)
    p[48:60] = np.c_[100 + 18 * np.cos(np.linspace(np.pi, -np.pi, 12, endpoint=False)),
                     130 + 6 * np.sin(np.linspace(np.pi, -np.pi, 12, endpoint=False))]
    p[60:68] = np.c_[100 + 12 * np.cos(np.linspace(np.pi, -np.pi, 8, endpoint=False)),
                     130 + 2 * np.sin(np.linspace(np.pi, -np.pi, 8, endpoint=False))]
    return p.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# 2. Silent audio: flagged, partial, and not usable (its speech features are of silence).


def test_audio_level_of_hand_made_signals() -> None:
    sr = 16000
    t = np.arange(3 * sr) / sr
    sine = 0.1 * np.sin(2 * np.pi * 220 * t)
    assert audio_level_dbfs(sine, sr) == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.05)
    assert audio_level_dbfs(np.zeros(3 * sr), sr) == -120.0
    click = np.zeros(3 * sr)
    click[sr: sr + 16] = 0.9  # one click in silence is not speech
    assert is_silent(click, sr)
    hiss = np.random.default_rng(0).normal(0, 10 ** (-70 / 20), 3 * sr)  # -70 dBFS noise floor
    assert is_silent(hiss, sr)
    assert not is_silent(10 ** (-40 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 220 * t), sr)  # -40 dBFS tone
    assert SILENT_AUDIO_DBFS == -50.0


def test_fixture_speech_is_not_silent(grid_root: Path, voxceleb_root: Path) -> None:
    """The quietest fixture speaker (VoxCeleb-style 00098) still reaches -25 dBFS."""
    clips = (grid_root / "s1" / "bbaf2n.mpg", grid_root / "s1" / "pgaq6n.mpg", voxceleb_root / "00098.mp4")
    for clip in clips:
        level = audio_level_dbfs(media.read_audio(clip))
        assert level > SILENT_AUDIO_DBFS + 20, (clip.name, level)


def test_silent_clip_is_flagged_and_not_usable(grid_root: Path, tmp_path: Path, tools: ClipTools) -> None:
    frames = media.read_video(grid_root / "s1" / "bbaf2n.mpg")
    speech = media.read_audio(grid_root / "s1" / "bbaf2n.mpg")
    store = DatasetStore(tmp_path / "ds")
    media.write_video(tmp_path / "silent.mp4", frames, 25.0, np.zeros_like(speech))
    media.write_video(tmp_path / "speech.mp4", frames, 25.0, speech)
    silent = _prepare(tmp_path / "silent.mp4", store, tools)
    spoken = _prepare(tmp_path / "speech.mp4", store, tools)
    assert spoken["status"] == "ok" and "silent_audio" not in spoken["flags"] and is_usable(spoken)
    assert silent["status"] == "partial" and "silent_audio=-120dBFS" in silent["flags"].split(";")
    assert not is_usable(silent)
    store.write_manifest()
    from talkface.store import Dataset

    assert Dataset.open(store.root).usable_ids() == ["speech"]


def test_silent_audio_flag_is_never_usable() -> None:
    """Whatever the status says, a clip flagged ``silent_audio`` is not usable (the one rule)."""
    rows = [{"clip_id": "a", "status": "ok", "flags": "silent_audio=-120dBFS"},
            {"clip_id": "b", "status": "ok", "flags": "interpolated_frames=2"},
            {"clip_id": "c", "status": "ok", "flags": None},
            {"clip_id": "d", "status": "partial", "flags": ""}]
    assert [is_usable(r) for r in rows] == [False, True, True, False]
    assert usable_mask(pd.DataFrame(rows)).tolist() == [False, True, True, False]
    assert not ClipRecord.from_dict(rows[0]).usable and ClipRecord.from_dict(rows[1]).usable


# ---------------------------------------------------------------------------------------------
# 3. Damaged media: decode what decodes, keep it at its time, flag the damage, never drop the clip.

SR_IN = 44100


def _sine_m4a(path: Path, bad_packet: int | None, freq: float = 440.0) -> tuple[np.ndarray, float | None]:
    """3 s of a 0.5-amplitude sine as AAC in mp4; packet ``bad_packet`` replaced by bytes AAC refuses.
    Returns the sine and the time (s) the bad packet starts at, by the muxed timestamps."""
    sine = (0.5 * np.sin(2 * np.pi * freq * np.arange(3 * SR_IN) / SR_IN)).astype(np.float32)
    bad_at = None
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=SR_IN)
        stream.layout = "mono"
        k = 0

        def mux(packet: av.Packet) -> None:
            nonlocal k, bad_at
            if k == bad_packet:
                broken = av.Packet(b"\xff" * packet.size)
                broken.pts, broken.dts, broken.duration = packet.pts, packet.dts, packet.duration
                broken.time_base = packet.time_base
                bad_at = float(packet.pts * packet.time_base)
                packet = broken
            container.mux(packet)
            k += 1

        size = stream.codec_context.frame_size or 1024
        for i in range(0, len(sine), size):
            frame = av.AudioFrame.from_ndarray(sine[None, i: i + size].copy(), format="flt", layout="mono")
            frame.sample_rate, frame.pts = SR_IN, i
            for packet in stream.encode(frame):
                mux(packet)
        for packet in stream.encode():
            mux(packet)
    return sine, bad_at


def test_one_bad_audio_packet_becomes_silence_at_its_time(tmp_path: Path) -> None:
    sr = media.AUDIO_RATE
    _, _ = _sine_m4a(tmp_path / "good.m4a", None)
    _, bad_at = _sine_m4a(tmp_path / "bad.m4a", 40)
    assert bad_at is not None
    good = media.read_audio(tmp_path / "good.m4a")
    info: dict = {}
    bad = media.read_audio(tmp_path / "bad.m4a", info=info)  # used to raise MediaError: the clip failed
    assert len(bad) == len(good) == 3 * sr  # nothing shifted, nothing lost in length
    assert info["bad_packets"] == 1 and len(info["gaps"]) == 1
    start, duration = info["gaps"][0]
    frame_s = 1024 / SR_IN
    # where the encoder stamped the packet (the returned samples start at time 0, the priming dropped)
    assert start == pytest.approx(bad_at, abs=1.5 / sr)
    assert duration == pytest.approx(frame_s, abs=1.5 / sr)
    a, b = int(round(start * sr)), int(round((start + duration) * sr))
    # silence in the gap (its edges ring for a few samples: the resampler's filter runs through it)
    assert np.abs(bad[a + 24: b - 24]).max() < 2e-3 and np.abs(good[a:b]).max() > 0.45
    # outside the gap (one frame of margin: AAC frames overlap) the damaged decode is the good one,
    # and both are the analytic sine in phase (the samples after the gap are at their time)
    margin = int(frame_s * sr) + 1
    keep = np.ones(len(bad), bool)
    keep[max(a - margin, 0): b + margin] = False
    keep[:margin] = keep[-margin:] = False
    assert np.abs(bad[keep] - good[keep]).max() < 1e-3
    t = np.arange(len(bad)) / sr
    reference = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    after = keep & (t > start + duration) & (t < start + duration + 0.5)  # (the encoder's last frame
    # is off in both decodes)
    assert np.corrcoef(bad[after], reference[after])[0, 1] > 0.99
    assert np.abs(bad[after] - reference[after]).max() < 0.05


def _numbered_video(path: Path, slots: list[int]) -> None:
    """A 25 fps mp4 whose frame at time slot k / 25 has grey level 8 * k; only ``slots`` are written."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        stream.options = {"crf": "0", "preset": "ultrafast", "bf": "0"}
        for k in slots:
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_missing_video_frames_are_stood_in_for_at_their_time(tmp_path: Path) -> None:
    slots = [k for k in range(20) if k not in (5, 9, 10)]  # three frames lost, as in a damaged file
    _numbered_video(tmp_path / "holes.mp4", slots)
    info: dict = {}
    frames = list(media.iter_frames(tmp_path / "holes.mp4", fps=25, info=info))
    assert len(frames) == 20 and info["filled_frames"] == [5, 9, 10]
    shown = [round(float(f.mean()) / 8) for f in frames]
    assert shown == [k if k in slots else max(s for s in slots if s < k) for k in range(20)]
    # at another rate too: frame k at 50 fps shows the slot nearest to time k / 50 (the resampler's
    # rule: source slot i covers [(i - 0.5) / 25, (i + 0.5) / 25)), a stand-in where that slot is lost
    info50: dict = {}
    frames50 = list(media.iter_frames(tmp_path / "holes.mp4", fps=50, info=info50))
    nearest = [int(np.floor(k / 2 + 0.5)) for k in range(len(frames50))]
    assert len(frames50) == 39
    assert info50["filled_frames"] == [k for k, i in enumerate(nearest) if i not in slots]
    assert [round(float(f.mean()) / 8) for f in frames50] == [shown[i] for i in nearest]


@pytest.fixture(scope="module")
def damaged_clip(fixtures_root: Path) -> Path:
    return require_path(fixtures_root / "grid_hq" / "s4" / "video" / "mpg_6000" / "bbaf2a.mpg",
                        "the damaged GRID HQ clip")


def test_damaged_hq_clip_keeps_its_audio_in_place(damaged_clip: Path) -> None:
    """bbaf2a.mpg: its audio packets' own timestamps (the demuxer, no decoding) say where the holes are."""
    with av.open(str(damaged_clip)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        origin, tb = packets[0].pts, float(stream.time_base)
        decodable = []
        for p in packets:
            try:
                p.decode()
                decodable.append(p.pts)
            except av.error.FFmpegError:
                pass
    frame_s = 1152 / 44100  # MPEG-1 layer II: 1152 samples a packet
    # the holes in the timestamps of the packets that decode: (start, length) in seconds
    expected = [((a - origin) * tb + frame_s, (b - a) * tb - frame_s)
                for a, b in zip(decodable, decodable[1:], strict=False) if (b - a) * tb > 1.5 * frame_s]
    info: dict = {}
    audio = media.read_audio(damaged_clip, info=info)
    assert info["bad_packets"] == len(packets) - len(decodable) == 1
    assert len(info["gaps"]) == len(expected) == 2
    for (start, duration), (ref_start, ref_duration) in zip(info["gaps"], expected, strict=True):
        assert start == pytest.approx(ref_start, abs=1e-3)
        assert duration == pytest.approx(ref_duration, abs=1e-3)
    end_s = (packets[-1].pts - origin) * tb + frame_s  # the audio runs to its last packet's end
    assert len(audio) / media.AUDIO_RATE == pytest.approx(end_s, abs=0.01)


def test_damaged_hq_clip_is_partial_not_failed(damaged_clip: Path, tmp_path: Path) -> None:
    """Through the folder recipe and the run, as a user prepares it: 75 frames in step with the audio,
    4 stand-in frames without a face of their own, the audio gap flagged, status partial."""
    from talkface.prepare.corpora import get_recipe
    from talkface.store import Dataset

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "bbaf2a.mpg").symlink_to(damaged_clip)
    sources = get_recipe("folder").discover(folder).clips
    store = DatasetStore(tmp_path / "ds")
    summary = run_prepare(sources, store, PrepareConfig())
    assert summary.statuses == {"partial": 1}, summary.failures
    record = Dataset.open(store.root).record("bbaf2a")
    assert record.n_frames == 75 and not record.usable
    assert record.flag("missing_frames") == "4"
    assert record.flag("audio_gap") == "0.104s" and record.flag("audio_bad_packets") == "1"
    clip = Dataset.open(store.root).load_clip("bbaf2a")
    assert len(clip["audio_features"]) == 75
    info: dict = {}
    assert sum(1 for _ in media.iter_frames(damaged_clip, 25, info=info)) == 75
    assert not clip["face_found"][info["filled_frames"]].any()
    assert clip["face_found"].sum() == 71
    assert media.probe_video(Dataset.open(store.root).crop_path("bbaf2a")).n_frames in (75, None)


def test_orientation_checks_are_the_same_batched_or_frame_by_frame(grid_root: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracker's passes measure the orientation on computed points only: one frame per chunk (no
    guess at all) gives the same frames, points and scores."""
    from talkface.core.landmarks import dlib_backend

    upright = media.read_video(grid_root / "s1" / "bbaf2n.mpg")[:60]  # tracked, measured every 5th frame
    turned = np.ascontiguousarray(media.read_video(grid_root / "s1" / "bgau1a.mpg")[20:60, ::-1, ::-1])
    backend = dlib_backend.DlibBackend()
    batched = [backend.track(iter(frames)) for frames in (upright, turned)]
    monkeypatch.setattr(dlib_backend, "CHUNK_FRAMES", 1)
    single = [backend.track(iter(frames)) for frames in (upright, turned)]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_array_equal(a.face_found, b.face_found)
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.orientation, b.orientation)
        assert a.rejected == b.rejected
    assert batched[0].face_found.all() and np.isfinite(batched[0].orientation).all(axis=1).sum() >= 12
    assert not batched[1].face_found.any() and batched[1].rejected.get("upside_down", 0) > 0
