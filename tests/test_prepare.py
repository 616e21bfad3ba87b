"""The GRID preparation path end to end, on the real fixture clips, and every bad-input case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from talkface.core import media
from talkface.prepare.corpora.base import ClipSource
from talkface.prepare.run import ClipTools, PrepareConfig, prepare_clip, run_prepare
from talkface.store.dataset_writer import DatasetStore, SettingsMismatch

INNER_LIP_TOP, INNER_LIP_BOTTOM = 62, 66


@pytest.fixture(scope="module")
def tools() -> ClipTools:
    return ClipTools(PrepareConfig())


def _source(path: Path, clip_id: str, words=()) -> ClipSource:
    return ClipSource(clip_id=clip_id, corpus="test", speaker="x", split="train", source_video=path,
                      words=list(words))


def _prepare_one(tmp_path: Path, tools: ClipTools, video: Path, words=()) -> tuple[dict, DatasetStore]:
    store = DatasetStore(tmp_path / "ds")
    row = prepare_clip(_source(video, video.stem, words), store, tools)
    assert store.is_done(video.stem)  # every clip, failed or not, leaves its row
    return row, store


def _rewrite(src: Path, dst: Path, edit_frames=None, audio_seconds: float | None = -1.0) -> Path:
    """Re-encode a fixture clip with edited frames and/or audio (None: drop the audio track)."""
    frames = media.read_video(src)
    if edit_frames:
        frames = edit_frames(frames.copy())
    audio = None
    if audio_seconds is not None:
        audio = media.read_audio(src)
        if audio_seconds >= 0:
            audio = audio[: int(audio_seconds * media.AUDIO_RATE)]
    media.write_video(dst, frames, 25.0, audio)
    return dst


def _coded_pictures(path: str) -> int:
    import av

    with av.open(path) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


# ---------------------------------------------------------------------------------------------
# Correctness on all fixture clips (the "done when" run: 127 clips, 2 workers).


def test_all_fixture_clips_prepare(prepared_grid_all: Path) -> None:
    df = DatasetStore(prepared_grid_all).read_manifest()
    assert len(df) == 127
    assert (df.status != "failed").all(), df[df.status == "failed"][["clip_id", "error"]]
    # s1_lgbf8n really starts with 12 flat grey frames (its first I-frame has no picture): no face
    # there is the right answer, and the clip is partial with both facts flagged.
    not_ok = df[df.status != "ok"]
    assert not_ok.clip_id.tolist() == ["s1_lgbf8n"], not_ok[["clip_id", "flags"]]
    assert "no_face_frames=12" in not_ok["flags"].iloc[0] and "blank_frames=12" in not_ok["flags"].iloc[0]
    s23 = df[df.clip_id == "s23_priazn"].iloc[0]
    assert "no_alignment" in s23["flags"] and s23.transcript == ""
    s1 = df[df.speaker == "s1"]
    assert len(s1) == 125
    # T equals the number of coded pictures, counted independently from the demuxer's packets. The
    # fixture README says 75 for every clip; s1_srbb4n really holds 74 (pts stop at frame 73).
    for row in s1.itertuples():
        assert row.n_frames == _coded_pictures(row.source_video), row.clip_id
    assert s1[s1.n_frames != 75].clip_id.tolist() == ["s1_srbb4n"]
    assert set(df.split) <= {"train", "val", "test"}
    assert (df.landmark_backend == "dlib").all() and (df.feature_backend == "logmel").all()


def test_s1_clips_have_a_face_on_every_frame_and_aligned_eyes(prepared_grid_all: Path) -> None:
    """A face on every frame that shows a picture; the eyes land where the template puts them."""
    from talkface.core.alignment import load_template

    store = DatasetStore(prepared_grid_all)
    template = load_template(128)
    # inter-ocular distance = outer eye corners 36 and 45 (the 300-W convention)
    iod_template = np.linalg.norm(template[36] - template[45])
    for row in store.read_manifest().query("speaker == 's1'").itertuples():
        clip = store.load_clip(row.clip_id)
        n = row.n_frames
        assert clip["landmarks"].shape == (n, 68, 2)
        assert clip["audio_features"].shape == (n, 16, 40)
        picture = np.ones(n, bool)
        if row.clip_id == "s1_lgbf8n":
            gray = media.read_video(row.source_video).mean(axis=3)
            picture = gray.std(axis=(1, 2)) >= 15  # independent of the pipeline's own blank check
            assert picture.sum() == 63
        assert clip["face_found"][picture].all(), row.clip_id
        assert not np.isnan(clip["landmarks"][picture]).any()
        aligned = clip["landmarks_aligned"][picture]
        iod = np.linalg.norm(aligned[:, 36] - aligned[:, 45], axis=1)
        assert np.all(np.abs(iod / iod_template - 1) < 0.05), (row.clip_id, iod.min(), iod.max())


def test_crops_are_aligned_faces_with_audio(prepared_grid_all: Path) -> None:
    store = DatasetStore(prepared_grid_all)
    crops = media.read_video(store.crop_path("s1_bbaf2n"))
    assert crops.shape == (75, 128, 128, 3)
    audio = media.read_audio(store.crop_path("s1_bbaf2n"))
    assert abs(len(audio) / media.AUDIO_RATE - 3.0) < 0.1
    # dlib finds the face in the crop again, close to where the stored aligned landmarks say it is.
    from talkface.core.landmarks import get_landmark_backend

    found = get_landmark_backend("dlib").detect(np.ascontiguousarray(crops[40]))
    assert found is not None
    ref = store.load_clip("s1_bbaf2n")["landmarks_aligned"][40]
    assert np.abs(found - ref).mean() < 3.0


def test_words_of_bbaf2n(prepared_grid_all: Path) -> None:
    words = DatasetStore(prepared_grid_all).load_clip("s1_bbaf2n")["words"]
    spoken = [w for w in words["word"] if w not in ("sil", "sp")]
    assert spoken == "bin blue at f two now".split()
    assert words["start_s"].min() >= 0 and words["end_s"].max() <= 3.0


def test_mouth_opening_follows_speech_energy(prepared_grid_all: Path) -> None:
    """Inner-lip opening correlates positively with log-mel energy over the s1 clips."""
    store = DatasetStore(prepared_grid_all)
    corrs = []
    for clip_id in store.read_manifest().query("speaker == 's1'").clip_id:
        clip = store.load_clip(clip_id)
        pts = clip["landmarks_aligned"]
        opening = np.linalg.norm(pts[:, INNER_LIP_TOP] - pts[:, INNER_LIP_BOTTOM], axis=1)
        # centre column of each window = the frame's own log-mel; energy = mean over mel bands
        energy = clip["audio_features"][:, 8, :].astype(np.float32).mean(axis=1)
        ok = ~np.isnan(opening)
        corrs.append(np.corrcoef(opening[ok], energy[ok])[0, 1])
    corrs = np.array(corrs)
    print(f"mouth opening vs log-mel energy: mean r = {corrs.mean():.3f} over {len(corrs)} clips")
    assert corrs.mean() > 0.3
    assert (corrs > 0).mean() > 0.9


def test_still_segment_jitter_is_small(prepared_grid_all: Path) -> None:
    """During the initial silence (from the alignment) the aligned landmarks barely move.

    Bound: median over clips of the mean frame-to-frame motion of the 68 aligned points < 0.35 px at
    128 px (a still face; the raw per-frame detector jitters about 2-3x more).
    """
    store = DatasetStore(prepared_grid_all)
    motions = []
    for clip_id in store.read_manifest().query("speaker == 's1'").clip_id:
        clip = store.load_clip(clip_id)
        words = clip["words"]
        if not len(words):
            continue
        n_still = int(words["start_s"].min() * 25) - 2  # frames before the first spoken word
        if n_still < 8:
            continue
        pts = clip["landmarks_aligned"][:n_still]
        pts = pts[~np.isnan(pts).any(axis=(1, 2))]
        if len(pts) < 8:
            continue
        motions.append(np.linalg.norm(np.diff(pts, axis=0), axis=2).mean())
    motions = np.array(motions)
    print(f"still-segment motion: median {np.median(motions):.3f} px/frame over {len(motions)} clips")
    assert len(motions) > 50
    assert np.median(motions) < 0.35


# ---------------------------------------------------------------------------------------------
# Bad input: each case is recorded, and the run completes.


def test_truncated_mpg_fails_with_reason(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    from talkface.prepare.corpora import get_recipe

    src = get_recipe("grid").discover(grid_root).by_id()["s1_bbaf2n"]
    cut = tmp_path / "bbaf2n.mpg"
    cut.write_bytes(src.source_video.read_bytes()[:120_000])
    row, store = _prepare_one(tmp_path, tools, cut, src.words)
    assert row["status"] == "failed" and "truncated" in row["error"]
    assert not store.clip_path("bbaf2n").exists() and not store.crop_path("bbaf2n").exists()


def test_corrupt_and_garbage_files_fail_cleanly(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    data = bytearray((grid_root / "s1" / "bbaf2n.mpg").read_bytes())
    rng = np.random.default_rng(0)
    data[200_000:260_000] = rng.integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    corrupt = tmp_path / "corrupt.mpg"
    corrupt.write_bytes(bytes(data))
    garbage = tmp_path / "garbage.mpg"
    garbage.write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mpg"
    empty.write_bytes(b"")
    store = DatasetStore(tmp_path / "ds")
    sources = [_source(p, p.stem) for p in (corrupt, garbage, empty)]
    sources.append(_source(grid_root / "s1" / "bbaf2n.mpg", "good"))
    summary = run_prepare(sources, store, PrepareConfig())
    df = store.read_manifest().set_index("clip_id")
    assert df.loc["good", "status"] == "ok"
    for bad in ("garbage", "empty"):
        assert df.loc[bad, "status"] == "failed"
        assert df.loc[bad, "error"] and "internal error" not in df.loc[bad, "error"]
    # 60 kB of noise in the middle of a real clip: what decodes is kept, in its place, and the clip is
    # partial with the damage flagged (9 frames and 0.39 s of audio lost), never ok
    corrupt = df.loc["corrupt"]
    assert corrupt["status"] == "partial" and corrupt["n_frames"] == 75
    assert "missing_frames=9" in corrupt["flags"] and "audio_gap=0.392s" in corrupt["flags"]
    assert summary.statuses == {"failed": 2, "partial": 1, "ok": 1}


def test_short_no_face_gap_is_interpolated(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    def black(frames):
        frames[30:33] = 0
        return frames

    video = _rewrite(grid_root / "s1" / "bbaf2n.mpg", tmp_path / "gap3.mp4", black)
    row, store = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "ok" and "interpolated_frames=3" in row["flags"]
    clip = store.load_clip("gap3")
    assert not clip["face_found"][30:33].any() and clip["face_found"][:30].all()
    assert not np.isnan(clip["landmarks"]).any()
    # interpolated points lie between their neighbours (the face barely moves in 5 frames)
    assert np.abs(clip["landmarks"][31] - clip["landmarks"][29]).mean() < 3


def test_long_no_face_gap_makes_partial(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    def black(frames):
        frames[20:40] = 0
        return frames

    video = _rewrite(grid_root / "s1" / "bbaf2n.mpg", tmp_path / "gap20.mp4", black)
    row, store = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "partial" and "no_face_frames=20" in row["flags"]
    clip = store.load_clip("gap20")
    nan_rows = np.isnan(clip["landmarks"]).any(axis=(1, 2))
    assert nan_rows[20:40].all() and not nan_rows[:20].any() and not nan_rows[40:].any()
    assert len(media.read_video(store.crop_path("gap20"))) == 75  # crops stay in step


def test_clip_without_any_face_fails(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    video = _rewrite(grid_root / "s1" / "bbaf2n.mpg", tmp_path / "noface.mp4", lambda f: f * 0)
    row, _ = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "failed" and "face found on 0 of 75 frames" in row["error"]


def test_video_without_audio_fails(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    video = _rewrite(grid_root / "s1" / "bbaf2n.mpg", tmp_path / "mute.mp4", audio_seconds=None)
    row, _ = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "failed" and "no audio stream" in row["error"]


def test_short_audio_is_padded_and_flagged(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    video = _rewrite(grid_root / "s1" / "bbaf2n.mpg", tmp_path / "short.mp4", audio_seconds=2.5)
    row, store = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "ok" and "audio_padded_ms" in row["flags"]
    padded_ms = float(row["flags"].split("audio_padded_ms=")[1].split(";")[0])
    assert 400 < padded_ms < 600  # ~0.5 s added (AAC framing moves it a little)
    assert store.load_clip("short")["audio_features"].shape[0] == 75


def test_much_shorter_audio_fails(tmp_path: Path, grid_root: Path, tools: ClipTools) -> None:
    video = _rewrite(grid_root / "s1" / "bbaf2n.mpg", tmp_path / "cut.mp4", audio_seconds=1.0)
    row, _ = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "failed" and "audio covers" in row["error"]


# ---------------------------------------------------------------------------------------------
# Resuming, settings, CLI.


def _dataset_snapshot(root: Path) -> tuple[pd.DataFrame, dict]:
    store = DatasetStore(root)
    df = store.read_manifest().drop(columns=["source_video", "source_audio"])
    arrays = {cid: store.load_clip(cid) for cid in df[df.status != "failed"].clip_id}
    return df, arrays


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "talkface.cli", *args]


def test_killed_run_resumes_to_the_same_dataset(tmp_path: Path, grid_root: Path) -> None:
    args = ["prepare", "grid", str(grid_root), "--speakers", "s1", "--limit", "6"]
    full = tmp_path / "full"
    subprocess.run(_cli(*args, "--out", str(full)), check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", str(killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((killed / "rows").glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list((killed / "rows").glob("*.json")))
    assert 2 <= n_done < 6, "the run should have been stopped part-way"
    second = subprocess.run(_cli(*args, "--out", str(killed)), check=True, capture_output=True, text=True)
    assert f"skipped {n_done} already finished" in " ".join((second.stdout + second.stderr).split())

    df_full, arrays_full = _dataset_snapshot(full)
    df_killed, arrays_killed = _dataset_snapshot(killed)
    pd.testing.assert_frame_equal(df_full, df_killed)
    for cid, arrays in arrays_full.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, arrays_killed[cid][key], err_msg=f"{cid}/{key}")
    # a third run has nothing to do and says so
    third = subprocess.run(_cli(*args, "--out", str(killed)), check=True, capture_output=True, text=True)
    assert "already finished" in " ".join((third.stdout + third.stderr).split())


def test_other_settings_are_refused(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.claim({"crop_size": 128, "feature_options": {"backend": "logmel"}})
    with pytest.raises(SettingsMismatch, match="crop_size: prepared with 128, asked for 256"):
        store.claim({"crop_size": 256, "feature_options": {"backend": "logmel"}})
    store.claim({"crop_size": 256, "feature_options": {"backend": "logmel"}}, overwrite=True)


def test_cli_prepare_refuses_changed_settings_and_inspect_draws(tmp_path: Path, grid_root: Path) -> None:
    out = tmp_path / "ds"
    base = ["prepare", "grid", str(grid_root), "--speakers", "s2", "--out", str(out)]
    subprocess.run(_cli(*base), check=True, capture_output=True)
    refused = subprocess.run(_cli(*base, "--crop-size", "256"), capture_output=True, text=True)
    assert refused.returncode == 2 and "crop_size" in refused.stdout + refused.stderr
    png = tmp_path / "check.png"
    subprocess.run(_cli("inspect", "s2_swwp2s", "--data", str(out), "--frame", "10", "--out", str(png)),
                   check=True, capture_output=True)
    import cv2

    image = cv2.imread(str(png))
    assert image is not None and image.shape[1] > 360 + 288  # source beside the enlarged crop


def test_exit_status_nonzero_only_when_nothing_prepared(tmp_path: Path) -> None:
    folder = tmp_path / "videos" / "spk"
    folder.mkdir(parents=True)
    (folder / "broken.mp4").write_bytes(b"not a video")
    result = subprocess.run(_cli("prepare", "folder", str(tmp_path / "videos"), "--out", str(tmp_path / "o")),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "failed" in result.stdout + result.stderr


def test_features_command_writes_windows(tmp_path: Path, grid_root: Path) -> None:
    out = tmp_path / "f.npy"
    subprocess.run(_cli("features", str(grid_root / "s1" / "bbaf2n.mpg"), "--features", "mfcc", "--out",
                        str(out)), check=True, capture_output=True)
    feats = np.load(out)
    # 47,648 samples = 2.978 s of audio; x 25 fps = 74.45 -> 74 frames
    assert feats.shape == (74, 16, 13)


def test_help_is_a_tour() -> None:
    result = subprocess.run(_cli("--help"), capture_output=True, text=True, check=True)
    for command in ("prepare", "inspect", "features", "demo"):
        assert command in result.stdout


def test_rerun_with_another_protocol_adds_a_column_and_redoes_nothing(tmp_path: Path,
                                                                      grid_root: Path) -> None:
    """The issue's case: a rerun with another protocol used to move every clip's ``split`` silently."""
    from talkface.store import Dataset

    out = tmp_path / "ds"
    base = ["prepare", "grid", str(grid_root), "--speakers", "s1,s2", "--limit", "3", "--out", str(out)]
    subprocess.run(_cli(*base), check=True, capture_output=True)  # default: speaker-independent
    rows_before = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.json")}
    first_protocol = (out / "splits" / "speaker-independent.json").read_bytes()
    split_before = Dataset.open(out).manifest().set_index("clip_id")["split"].to_dict()
    assert set(split_before.values()) == {"test"}  # LipNet's unseen speakers s1 and s2

    again = subprocess.run(_cli(*base, "--split", "seen"), capture_output=True, text=True, check=True)
    text = " ".join((again.stdout + again.stderr).split())
    assert "--split is deprecated; use --protocol" in text
    assert "added split protocol 'seen'" in text and "no clip was redone" in text
    assert "all 3 clips were already finished" in text
    assert {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.json")} == rows_before
    assert (out / "splits" / "speaker-independent.json").read_bytes() == first_protocol
    ds = Dataset.open(out)
    m = ds.manifest().set_index("clip_id")
    assert m["split"].to_dict() == split_before  # the default protocol's column is unchanged
    assert m["split_speaker-independent"].to_dict() == split_before
    from talkface.prepare.corpora.grid import load_seen_split

    rule = load_seen_split()
    assert m["split_seen"].to_dict() == {c: rule.assign(c) for c in m.index}
    assert ds.protocols() == ["speaker-independent", "seen"]
    assert ds.info.protocols["seen"] == {p: sum(rule.assign(c) == p for c in m.index)
                                         for p in ("train", "val", "test")}


def test_run_prepare_records_the_discovered_protocol(tmp_path: Path, grid_root: Path) -> None:
    from talkface.prepare.corpora import get_recipe
    from talkface.store import Dataset

    recipe = get_recipe("grid")
    wanted = {"s1_bbaf2n", "s2_swwp2s"}
    store = DatasetStore(tmp_path / "ds")
    seen = [c for c in recipe.discover(grid_root, split="seen").clips if c.clip_id in wanted]
    run_prepare(seen, store, PrepareConfig())
    independent = [c for c in recipe.discover(grid_root, split="speaker-independent").clips
                   if c.clip_id in wanted]
    summary = run_prepare(independent, store, PrepareConfig())
    assert summary.prepared == 0 and summary.skipped == 2 and summary.protocol.added
    ds = Dataset.open(store.root)
    assert ds.info.default_protocol == "seen" and ds.protocols() == ["seen", "speaker-independent"]
    assert ds.parts("speaker-independent").test == sorted(wanted)
    splits = ds.manifest().set_index("clip_id").split.to_dict()
    assert splits == {c.clip_id: c.split for c in seen}


# ---------------------------------------------------------------------------------------------
# Faults from the contracts issue: each reproduced first.


def test_grid_clip_cut_to_72_percent_is_partial_video_truncated(tmp_path: Path, grid_root: Path,
                                                                tools: ClipTools) -> None:
    """Used to prepare ``ok`` with 55 frames and only an audio_padded_ms flag."""
    from talkface.prepare.corpora import get_recipe

    src = get_recipe("grid").discover(grid_root).by_id()["s1_bbaf2n"]
    data = src.source_video.read_bytes()
    cut = tmp_path / "bbaf2n.mpg"
    cut.write_bytes(data[: int(len(data) * 0.72)])
    source = ClipSource(clip_id="cut72", corpus="grid", speaker="s1", split="train", source_video=cut,
                        words=src.words, expected_duration_s=src.expected_duration_s)
    store = DatasetStore(tmp_path / "ds")
    row = prepare_clip(source, store, tools)
    assert row["status"] == "partial", row
    flag = [f for f in row["flags"].split(";") if f.startswith("video_truncated=")]
    # the alignment ends at 74500 / 25000 = 2.98 s
    assert flag == [f"video_truncated={row['n_frames'] / 25:.2f}/2.98s"]
    assert 50 <= row["n_frames"] <= 58
    assert store.load_clip("cut72")["audio_features"].shape[0] == row["n_frames"]


def test_video_ending_well_before_its_audio_is_partial(tmp_path: Path, grid_root: Path,
                                                       tools: ClipTools) -> None:
    frames = media.read_video(grid_root / "s1" / "bbaf2n.mpg")[:50]  # 2.0 s of picture
    video = tmp_path / "short_video.mp4"
    media.write_video(video, frames, 25.0, media.read_audio(grid_root / "s1" / "bbaf2n.mpg"))  # 2.978 s
    row, store = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "partial" and "video_truncated=2.00/2.98s" in row["flags"]
    # a video that covers less than half of its audio fails
    video = tmp_path / "tiny_video.mp4"
    media.write_video(video, frames[:30], 25.0, media.read_audio(grid_root / "s1" / "bbaf2n.mpg"))
    row, _ = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "failed" and "video truncated" in row["error"]


def test_upside_down_clip_is_not_prepared_with_landmarks_on_the_forehead(tmp_path: Path, grid_root: Path,
                                                                         tools: ClipTools) -> None:
    """Used to prepare with face_ratio 0.67 and the mouth points on the forehead."""
    video = _rewrite(grid_root / "s1" / "bbaf2n.mpg", tmp_path / "flipped.mp4", lambda f: f[:, ::-1].copy())
    row, store = _prepare_one(tmp_path, tools, video)
    assert row["status"] == "failed", row
    assert "not a plausible face" in row["error"] and "upside down" in row["error"]
    assert "rejected_faces=" in row["flags"] and not store.clip_path("flipped").exists()


def test_implausible_landmark_frames_are_rejected_like_missing_faces(tmp_path: Path, grid_root: Path) -> None:
    """A backend that returns a face-shaped set with the mouth above the eyes on some frames, or a jump
    in scale on one: those frames count as no face (here: gaps short enough to be interpolated)."""
    from talkface.core.landmarks import get_landmark_backend

    real = get_landmark_backend("dlib")

    class Faulty:
        name = "faulty"

        def track(self, frames):
            track = real.track(frames)
            pts = track.points.copy()
            centre = pts[10:12].mean(axis=1, keepdims=True)
            pts[10:12, :, 1] = 2 * centre[..., 1] - pts[10:12, :, 1]  # mouth above the eyes
            pts[40] = (pts[40] - pts[40].mean(0)) * 1.8 + pts[40].mean(0)  # eye distance jumps
            track.points = pts
            return track

        def settings(self):
            return {"backend": "faulty"}

    tools = ClipTools(PrepareConfig())
    tools.landmarks = Faulty()
    row = prepare_clip(_source(grid_root / "s1" / "bbaf2n.mpg", "faulty"), DatasetStore(tmp_path), tools)
    assert row["status"] == "ok" and row["face_ratio"] == pytest.approx(72 / 75)
    assert "rejected_faces=jump:1,order:2" in row["flags"] and "interpolated_frames=3" in row["flags"]
    clip = DatasetStore(tmp_path).load_clip("faulty")
    assert not clip["face_found"][[10, 11, 40]].any() and clip["face_found"][:10].all()


def test_fixture_clips_keep_their_faces(prepared_grid_all: Path) -> None:
    """The plausibility checks reject no frame of a real clip (face ratios as before the checks)."""
    df = DatasetStore(prepared_grid_all).read_manifest()
    assert not df["flags"].fillna("").str.contains("rejected_faces").any()
    ok = df[df.clip_id != "s1_lgbf8n"]
    assert (ok.face_ratio == 1.0).all()
    assert df.set_index("clip_id").at["s1_lgbf8n", "face_ratio"] == pytest.approx(63 / 75)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_file_modes_follow_the_umask(tmp_path: Path, grid_root: Path, umask: int, mode: int) -> None:
    """Every file used to be 0600 (mkstemp's mode kept by the rename)."""
    store = DatasetStore(tmp_path / "ds")
    old = os.umask(umask)
    try:
        run_prepare([_source(grid_root / "s2" / "swwp2s.mpg", "s2_swwp2s")], store, PrepareConfig())
    finally:
        os.umask(old)
    for path in (store.manifest_path, store.clip_path("s2_swwp2s"), store.crop_path("s2_swwp2s"),
                 store.row_path("s2_swwp2s"), store.info_path, store.protocol_path("custom")):
        assert path.stat().st_mode & 0o777 == mode, path
    assert {p.stat().st_mode & 0o777 for p in _files(store.root)} == {mode}


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_cleanly_and_says_how_to_continue(tmp_path: Path, grid_root: Path, workers: int) -> None:
    out = tmp_path / "ds"
    args = ["prepare", "grid", str(grid_root), "--speakers", "s1", "--limit", "6", "-j", str(workers),
            "--out", str(out)]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    def finished_rows() -> list[str]:  # not the atomic writer's temporary files (.<id>.<random>.tmp.json)
        return sorted(p.stem for p in (out / "rows").glob("*.json") if not p.name.startswith("."))

    deadline = time.time() + 180
    while time.time() < deadline and len(finished_rows()) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    output, _ = proc.communicate(timeout=120)
    text = " ".join(output.split())
    rows = finished_rows()
    assert proc.returncode == 130, text
    assert f"interrupted: {len(rows)} clips finished, run the same command to continue" in text
    assert "Traceback" not in text and 2 <= len(rows) < 6
    assert not [p for p in _files(out) if ".tmp" in p.name]  # nothing half-written
    assert not (out / ".talkface.lock").exists()
    df = DatasetStore(out).read_manifest()
    assert sorted(df.clip_id) == rows and (df.status == "ok").all()
    for cid in rows:
        assert DatasetStore(out).clip_path(cid).exists() and DatasetStore(out).crop_path(cid).exists()
    again = subprocess.run(_cli(*args), capture_output=True, text=True)
    assert again.returncode == 0
    assert f"skipped {len(rows)} already finished" in " ".join((again.stdout + again.stderr).split())
    assert len(DatasetStore(out).read_manifest()) == 6


def test_prepare_voxceleb_command_exists_and_prepares(tmp_path: Path, voxceleb_root: Path) -> None:
    root = tmp_path / "vox"
    for spk, vid in (("id00012", "21Uxsk56VDQ"), ("id10001", "1zcIwhmdeo4")):
        (root / spk / vid).mkdir(parents=True)
        os.symlink(voxceleb_root / "00015.mp4", root / spk / vid / "00001.mp4")
    out = tmp_path / "ds"
    result = subprocess.run(_cli("prepare", "voxceleb", str(root), "--out", str(out), "--protocol", "hash"),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    from talkface.store import Dataset

    ds = Dataset.open(out)
    assert ds.corpus == "voxceleb" and ds.protocols() == ["hash"]
    assert [r.speaker for r in ds.records()] == ["id00012", "id10001"]
    assert all(r.status == "ok" and r.n_frames == 174 for r in ds.records())


def test_prepare_commands_come_from_the_corpus_registry() -> None:
    from talkface.prepare.corpora import available_recipes

    result = subprocess.run(_cli("prepare", "--help"), capture_output=True, text=True, check=True)
    for name in available_recipes():
        assert name in result.stdout
    for name in available_recipes():
        helptext = subprocess.run(_cli("prepare", name, "--help"), capture_output=True, text=True, check=True)
        flat = " ".join(helptext.stdout.split())
        for flag in ("--out", "--protocol", "--workers", "--features", "--deepspeech-model", "--limit"):
            assert flag in flat, (name, flag)


def test_features_command_old_flag_names_still_work(tmp_path: Path, grid_root: Path) -> None:
    out = tmp_path / "f.npy"
    result = subprocess.run(_cli("features", str(grid_root / "s1" / "bbaf2n.mpg"), "--backend", "mfcc",
                                 "--out", str(out)), capture_output=True, text=True, check=True)
    assert "--backend is deprecated; use --features" in " ".join(result.stderr.split())
    assert np.load(out).shape[-1] == 13
