"""TCD-TIMIT recipe: layouts, ids, speakers, splits, transcripts, labels and naming flags on trees built
in tmp folders, and a 29.97 fps clip made from a GRID fixture prepared through ``talkface prepare``."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import talkface.prepare.corpora.tcd_timit as tcd
from talkface.prepare.corpora import CorpusError, get_recipe
from talkface.prepare.corpora.base import data_manifests_dir

# The published speaker-independent test volunteers (Harte & Gillen 2015, 70/30), written out here by
# hand from matthijsvk/multimodalSR so the committed CSV is checked against an independent copy.
TEST_VOLUNTEERS = {"13F", "15F", "21M", "23M", "24M", "25M", "28M", "29M", "30F", "31F", "34M", "36F",
                   "37F", "43F", "47M", "51F", "54M"}
SA1 = "She had your dark suit in greasy wash water all year."
INNER_LIP_TOP, INNER_LIP_BOTTOM = 62, 66


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _tree(root: Path) -> Path:
    """Empty files in the distributed layout (discovery decodes nothing)."""
    for spk, names in {"01M": ["sa1", "sa2", "si1036"], "13F": ["sa1", "sx137"], "27M": ["sa1"]}.items():
        for name in names:
            _touch(root / "volunteers" / spk / "Clips" / "straightcam" / f"{name}.mp4")
            _touch(root / "volunteers" / spk / "Clips" / "30degcam" / f"{name}.mp4")
    _touch(root / "lipspeakers" / "Lipspkr1" / "straightcam" / "sx180.mp4")  # no Clips level
    return root


def _recipe():
    return get_recipe("tcd-timit")


# Layout, ids, speakers, splits ----------------------------------------------------------------------


def test_ids_speakers_and_published_split(tmp_path: Path) -> None:
    found = _recipe().discover(_tree(tmp_path))
    by_id = found.by_id()
    assert sorted(by_id) == sorted(["01M_sa1", "01M_sa2", "01M_si1036", "13F_sa1", "13F_sx137", "27M_sa1",
                                    "Lipspkr1_sx180"])
    assert found.speakers() == ["01M", "13F", "27M", "Lipspkr1"]
    parts = {c.clip_id: c.split for c in found.clips}
    assert parts["01M_sa1"] == "train" and parts["13F_sx137"] == "test"
    assert parts["27M_sa1"] == "unassigned"  # non-Irish accent: left out of the published split
    assert parts["Lipspkr1_sx180"] == "unassigned"
    assert all(c.protocol == "speaker-independent" and c.corpus == "tcd-timit" for c in found.clips)
    assert by_id["01M_sa1"].source_video == tmp_path / "volunteers/01M/Clips/straightcam/sa1.mp4"
    assert by_id["01M_sa1"].source_audio is None  # the video's own track
    assert "01M_sa2" in by_id and by_id["01M_sa2"].flags == ["no_transcript"]


def test_angled_camera_gets_its_own_ids(tmp_path: Path) -> None:
    found = _recipe().discover(_tree(tmp_path), camera="30degcam")
    assert "01M_sa1_30degcam" in found.by_id()
    assert found.by_id()["01M_sa1_30degcam"].source_video.parent.name == "30degcam"
    assert any("Lipspkr1: no 30degcam folder" in p or "Lipspkr1/" in p for p in found.problems)


def test_seen_protocol_is_the_committed_hash_rule(tmp_path: Path) -> None:
    found = _recipe().discover(_tree(tmp_path), split="seen")
    for clip in found.clips:  # recomputed by hand from the formula in data_manifests/tcd_timit/README.md
        h = int.from_bytes(hashlib.sha256(f"2020:{clip.clip_id}".encode()).digest()[:8], "big") / 2**64
        assert clip.split == ("train" if h < 0.8 else "val" if h < 0.9 else "test")
        assert clip.protocol == "seen"
    rows = [(c.clip_id, c.speaker, c.split) for c in found.clips]
    assert _recipe().recognise_protocol(rows) == "seen"


def test_committed_split_and_speaker_lists() -> None:
    folder = data_manifests_dir() / "tcd_timit"
    with open(folder / "speaker_independent.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    split = {r["speaker"]: r["split"] for r in rows}
    assert len(rows) == len(split) == 62  # every speaker once
    volunteers = {f"{i:02d}" for i in range(1, 60)}
    assert {s[:2] for s in split if not s.startswith("Lip")} == volunteers
    assert {s for s, p in split.items() if p == "test"} == TEST_VOLUNTEERS
    assert {s for s, p in split.items() if p == "unassigned"} == {"27M", "35M", "53M", "Lipspkr1", "Lipspkr2",
                                                                  "Lipspkr3"}
    assert sum(p == "train" for p in split.values()) == 39  # the paper's 39 / 17 volunteers
    with open(folder / "speakers.csv", newline="") as fh:
        speakers = list(csv.DictReader(fh))
    assert {r["speaker"] for r in speakers} == set(split)
    for r in speakers:  # the corpus's spreadsheet agrees with the gender letter of every volunteer id
        if r["group"] == "volunteers":
            assert r["gender"][0].upper() == r["speaker"][-1]
    assert sum(r["gender"] == "male" for r in speakers) == 32  # paper: 32 male, 27 female volunteers + 3 F


# Transcripts and labels -----------------------------------------------------------------------------


def test_transcripts_from_prompts_and_sidecars(tmp_path: Path) -> None:
    root = _tree(tmp_path / "c")
    _touch(root / "PROMPTS.TXT", "; TIMIT prompts (two lines for the test)\n;\n"
           f"{SA1} (sa1)\nThe antithesis of the thesis. (si1036)\n")
    # a TIMIT-style sidecar (<start sample> <end sample> text) wins over the prompt
    _touch(root / "volunteers/13F/Clips/straightcam/sa1.txt", "0 46797 She had your suit.\n")
    by_id = _recipe().discover(root).by_id()
    assert by_id["01M_sa1"].transcript == SA1
    assert by_id["01M_si1036"].transcript == "The antithesis of the thesis."
    assert by_id["13F_sa1"].transcript == "She had your suit."
    assert "no_transcript" in by_id["13F_sx137"].flags
    # an explicit --prompts file elsewhere
    other = _touch(tmp_path / "prompts.txt", f"{SA1.upper()} (SA1)\n")
    found = _recipe().discover(_tree(tmp_path / "d"), prompts=str(other))
    assert found.by_id()["01M_sa1"].transcript == SA1.upper()


def test_label_files_parse_and_flag_missing_entries(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    mlf = _touch(root / "volunteer_labelfiles.mlf", "#!MLF!#\n"
                 '"/media/x/TCDTIMIT/volunteers/01M/Clips/straightcam/sa1.mp4"\n'
                 "0 9100000 sil\n9100000 10500000 sh\n.\n"
                 '"13F/sa1.rec"\n0 5000000 sil\n.\n'
                 '"13F/sx137.rec"\n0 1200000 sil\n.\n"27M/sa1.rec"\n.\n')
    entries, problems = tcd.parse_mlf(mlf)
    assert problems == []
    assert entries[("01M", "sa1")].rows == [(0.0, 0.91, "sil"), (0.91, 1.05, "sh")]  # 100 ns units
    by_id = _recipe().discover(root).by_id()
    assert "no_labels" in by_id["01M_sa2"].flags and "no_labels" not in by_id["01M_sa1"].flags
    assert "no_labels" not in by_id["Lipspkr1_sx180"].flags  # no lipspeaker label file given


def test_speaker_42M_naming_problems_are_flags(tmp_path: Path) -> None:
    """Mixed-case folder and extensions, a duplicated and a misnamed sentence file: all flagged."""
    cam = tmp_path / "volunteers" / "42m" / "Clips" / "straightcam"
    for name in ("sa1.mp4", "SA1.MP4", "SI1036 (1).mp4", "Sx137.MP4", "take2.mp4", "notes.doc"):
        _touch(cam / name)
    found = _recipe().discover(tmp_path)
    by_id = found.by_id()
    assert sorted(by_id) == ["42M_sa1", "42M_si1036", "42M_sx137", "42M_take2"]
    assert {c.speaker for c in found.clips} == {"42M"}
    assert by_id["42M_sa1"].source_video.name == "sa1.mp4"  # the exactly named file is kept
    assert "duplicate_source" in by_id["42M_sa1"].flags
    assert "misnamed_file" in by_id["42M_si1036"].flags and "misnamed_file" in by_id["42M_sx137"].flags
    assert "misnamed_file" in by_id["42M_take2"].flags
    assert "transcript_issue=mid" in by_id["42M_si1036"].flags  # the corpus's own note on 42M si1036
    text = "\n".join(found.problems)
    assert "'42m'" in text and "SA1.MP4" in text and "take2.mp4" in text
    # the same speaker twice (42M and 42m): one clip per sentence, the repeat flagged
    _touch(tmp_path / "volunteers" / "42M" / "straightcam" / "sa1.mp4")
    again = _recipe().discover(tmp_path)
    assert sum(c.clip_id == "42M_sa1" for c in again.clips) == 1
    assert any("second folder for speaker 42M" in p for p in again.problems)


# Bad input ------------------------------------------------------------------------------------------


def test_bad_input_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        _recipe().discover(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    _touch(tmp_path / "flat" / "sa1.mp4")
    with pytest.raises(CorpusError, match=r"Expected <root>/volunteers/01M/Clips/straightcam/sa1\.mp4"):
        _recipe().discover(tmp_path / "flat")
    _touch(tmp_path / "novideo" / "volunteers" / "01M" / "Clips" / "straightcam" / "readme.txt")
    with pytest.raises(CorpusError, match="no straightcam videos"):
        _recipe().discover(tmp_path / "novideo")
    root = _tree(tmp_path / "ok")
    with pytest.raises(CorpusError, match="camera must be one of"):
        _recipe().discover(root, camera="side")
    with pytest.raises(CorpusError, match="unknown split protocol"):
        _recipe().discover(root, split="official")
    with pytest.raises(CorpusError, match="prompts file .* does not exist"):
        _recipe().discover(root, prompts=str(tmp_path / "nope.txt"))
    bad = _touch(tmp_path / "bad_prompts.txt", "no sentence ids here\n")
    with pytest.raises(CorpusError, match="PROMPTS.TXT"):
        _recipe().discover(root, prompts=str(bad))
    _touch(root / "volunteers" / "guest" / "straightcam" / "sa1.mp4")
    _touch(root / "volunteers" / "02M" / "Clips" / "straightcam.zip")  # downloaded, not unpacked
    problems = _recipe().discover(root).problems
    assert any("guest: not a TCD-TIMIT speaker folder" in p for p in problems)
    assert any("02M: no straightcam folder" in p and "unzip straightcam.zip first" in p for p in problems)


# 29.97 fps through the pipeline ---------------------------------------------------------------------


def _reencode_2997(src: Path, dst: Path) -> int:
    """``src`` re-encoded at 30000/1001 fps (each output frame the source frame nearest in time), the
    same audio re-encoded as AAC. Returns the number of video frames written."""
    import av

    with av.open(str(src)) as inp:
        vstream = inp.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(vstream)]
        src_fps = float(vstream.average_rate)
    with av.open(str(src)) as inp:
        audio = [f for f in inp.decode(audio=0)]
        rate = audio[0].sample_rate
        pcm = np.concatenate([f.to_ndarray().reshape(-1, f.samples) for f in audio], axis=1)
        layout = audio[0].layout.name
        fmt = audio[0].format.name
    duration = len(frames) / src_fps
    fps = Fraction(30000, 1001)
    n_out = int(round(duration * float(fps)))
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = frames[0].shape[1], frames[0].shape[0]
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "12", "preset": "veryfast"}
        as_ = out.add_stream("aac", rate=rate)
        as_.layout = layout
        for k in range(n_out):
            i = min(int(np.floor(k / float(fps) * src_fps + 0.5)), len(frames) - 1)
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        step = 1024
        for start in range(0, pcm.shape[1], step):
            chunk = np.ascontiguousarray(pcm[:, start:start + step])
            af = av.AudioFrame.from_ndarray(chunk if fmt.endswith("p") else chunk.T.reshape(1, -1).copy(),
                                            format=fmt, layout=layout)
            af.sample_rate = rate
            af.pts = start
            for rf in resampler.resample(af):
                for packet in as_.encode(rf):
                    out.mux(packet)
        for packet in as_.encode(None):
            out.mux(packet)
    return n_out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "talkface.cli", *args]


def _opening_energy(ds, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
    clip = ds.load_clip(clip_id)
    pts = clip["landmarks_aligned"]
    opening = np.linalg.norm(pts[:, INNER_LIP_TOP] - pts[:, INNER_LIP_BOTTOM], axis=1)
    windows = clip["audio_features"].astype(np.float32)
    energy = windows[:, windows.shape[1] // 2, :].mean(axis=1)  # each frame's own log-mel column
    return opening, energy


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def test_2997_fps_clip_prepares_at_25_fps_in_sync(tmp_path: Path, grid_root: Path) -> None:
    """A GRID clip re-encoded at 29.97 fps, in the TCD-TIMIT layout, prepared with ``talkface prepare
    tcd-timit``: round(duration * 25) frames, and its mouth opening follows the speech energy as in the
    original 25 fps clip (prepared with ``talkface prepare grid``)."""
    from talkface.store.dataset import Dataset

    root = tmp_path / "TCD-TIMIT"
    video = root / "volunteers" / "01M" / "Clips" / "straightcam" / "sa1.mp4"
    video.parent.mkdir(parents=True)
    n_2997 = _reencode_2997(grid_root / "s1" / "bbaf2n.mpg", video)
    assert n_2997 == 90  # 3.0 s at 29.97 fps

    out = tmp_path / "tcd_ds"
    run = subprocess.run(_cli("prepare", "tcd-timit", str(root), "--out", str(out)),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    ref_out = tmp_path / "grid_ds"
    run = subprocess.run(_cli("prepare", "grid", str(grid_root), "--speakers", "s1", "--limit", "1",
                              "--out", str(ref_out)), capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr

    ds, ref = Dataset.open(out), Dataset.open(ref_out)
    rec, ref_rec = ds.record("01M_sa1"), ref.record("s1_bbaf2n")
    assert rec.status == "ok", rec.error
    assert rec.speaker == "01M" and rec.corpus == "tcd-timit" and rec.split == "train"
    assert rec.fps == 25.0
    assert rec.n_frames == round(rec.duration_s * 25)
    assert rec.n_frames == ref_rec.n_frames

    opening, energy = _opening_energy(ds, "01M_sa1")
    ref_opening, ref_energy = _opening_energy(ref, "s1_bbaf2n")
    r, r_ref = _corr(opening, energy), _corr(ref_opening, ref_energy)
    print(f"{rec.n_frames} frames ({rec.duration_s:.3f} s) from {n_2997} at 29.97 fps, {ref_rec.n_frames} "
          f"at 25 fps; mouth opening vs energy: r = {r:.3f} at 29.97 fps, {r_ref:.3f} at 25 fps; "
          f"opening curves r = {_corr(opening, ref_opening):.3f}")
    assert r > 0.3 and abs(r - r_ref) < 0.15
    # the two openings are the same motion, frame for frame (a lag would lower this sharply)
    assert _corr(opening, ref_opening) > 0.9
    n = min(len(opening), len(ref_opening))
    lags = {lag: _corr(opening[max(lag, 0):n + min(lag, 0)], ref_opening[max(-lag, 0):n + min(-lag, 0)])
            for lag in (-2, -1, 0, 1, 2)}
    assert max(lags, key=lags.get) == 0
