"""The voxceleb recipe on trees built in tmp folders: ids, speakers, the official test identities,
speaker-disjoint parts recomputed with hashlib, .m4a audio, and ``talkface prepare voxceleb`` on the
VoxCeleb-style fixture clips (the largest face, the separate audio used)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkface.prepare.corpora import CorpusError, get_recipe
from talkface.prepare.corpora.voxceleb import load_test_identities

VOX1_TEST, VOX2_TEST = "id10270", "id00017"  # first ids of the committed lists
DEV = ("id00012", "id10001", "id00020", "id00021", "id10300x")  # the last is not an idXXXXX folder


def _hash(key: str, seed: int = 0) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def test_official_lists_are_read() -> None:
    ids = load_test_identities()
    assert len(ids) == 40 + 118
    assert {f"id{n}" for n in range(10270, 10310)} <= ids and VOX2_TEST in ids
    assert "id00012" not in ids and "id10001" not in ids


def test_flat_tree_official_parts_and_ids(tmp_path: Path) -> None:
    root = tmp_path / "vox"
    for spk in (VOX1_TEST, VOX2_TEST, *DEV):
        for vid, n in (("21Uxsk56VDQ", "00001"), ("21Uxsk56VDQ", "00002"), ("abcDEF12345", "00001")):
            _touch(root / spk / vid / f"{n}.mp4")
    found = get_recipe("voxceleb").discover(root)  # official is the default
    assert any("id10300x" in p for p in found.problems)
    by_speaker: dict[str, set[str]] = {}
    for c in found.clips:
        by_speaker.setdefault(c.speaker, set()).add(c.split)
        assert c.clip_id.startswith(c.speaker + "__") and c.protocol == "official" and c.source_audio is None
    assert set(by_speaker) == {VOX1_TEST, VOX2_TEST, "id00012", "id10001", "id00020", "id00021"}
    assert all(len(parts) == 1 for parts in by_speaker.values())  # speaker-disjoint
    assert by_speaker[VOX1_TEST] == by_speaker[VOX2_TEST] == {"test"}
    assert by_speaker["id00021"] == {"val"}  # hash 0.937 >= 0.889
    # val: a hash share 0.1 / 0.9 of the other identities
    for spk in ("id00012", "id10001", "id00020", "id00021"):
        expected = "train" if _hash(spk) < 0.8 / 0.9 else "val"
        assert by_speaker[spk] == {expected}
    assert sorted(c.clip_id for c in found.clips if c.speaker == "id00012") == [
        "id00012__21Uxsk56VDQ__00001", "id00012__21Uxsk56VDQ__00002", "id00012__abcDEF12345__00001"]
    # speaker-hash ignores the list; hash splits clips (seen identities)
    sh = get_recipe("voxceleb").discover(root, split="speaker-hash")
    for c in sh.clips:
        h = _hash(c.speaker)
        assert c.split == ("train" if h < 0.8 else "val" if h < 0.9 else "test")
    hs = get_recipe("voxceleb").discover(root, split="hash", seed=3)
    for c in hs.clips:
        h = _hash(c.clip_id, 3)
        assert c.split == ("train" if h < 0.8 else "val" if h < 0.9 else "test")


def test_release_layout_with_aac_tree(tmp_path: Path) -> None:
    root = tmp_path / "vox2"
    _touch(root / "dev" / "mp4" / "id00012" / "v1" / "00001.mp4")
    _touch(root / "dev" / "aac" / "id00012" / "v1" / "00001.m4a")
    _touch(root / "dev" / "mp4" / "id00020" / "v1" / "00001.mp4")  # no audio file: the video's track
    _touch(root / "dev" / "mp4" / VOX2_TEST / "v1" / "00001.mp4")  # a listed test identity under dev/
    _touch(root / "test" / "mp4" / "id00061" / "v2" / "00003.mp4")
    _touch(root / "test" / "mp4" / "id00061" / "v2" / "00003.m4a")  # beside the video wins
    _touch(root / "test" / "aac" / "id00061" / "v2" / "00003.m4a")
    _touch(root / "test" / "mp4" / "id00999" / "v2" / "00001.mp4")  # unlisted identity under test/
    found = get_recipe("voxceleb").discover(root, split="official")
    clips = found.by_id()
    a = clips["id00012__v1__00001"]
    assert a.source_audio == root / "dev" / "aac" / "id00012" / "v1" / "00001.m4a"
    assert a.flags == ["audio=m4a"]
    assert clips["id00020__v1__00001"].source_audio is None
    b = clips["id00061__v2__00003"]
    assert b.source_audio == root / "test" / "mp4" / "id00061" / "v2" / "00003.m4a" and b.split == "test"
    assert clips["id00999__v2__00001"].split == "test"  # the folders decide
    assert clips[f"{VOX2_TEST}__v1__00001"].split in ("train", "val")
    text = "\n".join(found.problems)
    assert f"1 listed test identities under dev/ (the folders decide): {VOX2_TEST}" in text
    assert "1 unlisted identities under test/ (the folders decide): id00999" in text


def test_bad_trees_are_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no idXXXXX speaker folders"):
        get_recipe("voxceleb").discover(tmp_path / "empty")
    _touch(tmp_path / "novid" / "id00012" / "v1" / "notes.txt")
    with pytest.raises(CorpusError, match="hold no <video_id>/<n>.mp4 clips"):
        get_recipe("voxceleb").discover(tmp_path / "novid")
    with pytest.raises(CorpusError, match="unknown split protocol 'dev'"):
        get_recipe("voxceleb").discover(tmp_path / "novid", split="dev")


def test_cli_prepares_voxceleb_with_m4a_and_the_largest_face(tmp_path: Path, voxceleb_root: Path) -> None:
    """The fixture clip as a VoxCeleb2 dev clip whose .m4a is a 440 Hz tone: the crop carries the tone."""
    from talkface.core import media
    from talkface.store.dataset import Dataset

    root = tmp_path / "vox2"
    video = root / "dev" / "mp4" / "id00012" / "21Uxsk56VDQ" / "00001.mp4"
    video.parent.mkdir(parents=True)
    video.symlink_to(voxceleb_root / "00015.mp4")
    info = media.probe_video(video)
    t = np.arange(int(info.duration_s * 16000)) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    m4a = root / "dev" / "aac" / "id00012" / "21Uxsk56VDQ" / "00001.m4a"
    m4a.parent.mkdir(parents=True)
    _write_m4a(m4a, tone)
    out = tmp_path / "ds"
    run = subprocess.run([sys.executable, "-m", "talkface.cli", "prepare", "voxceleb", str(root),
                          "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    ds = Dataset.open(out)
    rec = ds.record("id00012__21Uxsk56VDQ__00001")
    assert rec.status == "ok", rec.error
    assert "audio=m4a" in rec.flags
    assert ds.info.settings["landmark_options"]["select"] == "largest"  # the choice is recorded
    audio = media.read_audio(ds.crop_path(rec.clip_id))
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 3  # the tone, not the speech
    bad = subprocess.run([sys.executable, "-m", "talkface.cli", "prepare", "voxceleb", str(root), "--out",
                          str(tmp_path / "x"), "--detector", "mtcnn"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown face detector 'mtcnn'" in bad.stdout + bad.stderr


def _write_m4a(path: Path, audio: np.ndarray, sr: int = 16000) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sr
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
