"""Folder and VoxCeleb recipes: ids from paths, sidecars, speakers, hash splits, bad input.

References: the file tree the test builds itself (expected ids written out by hand) and sha256 from
hashlib for the split rule.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from talkface.prepare.corpora import CorpusError, get_recipe
from talkface.prepare.corpora.base import rule_from_fractions


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def test_folder_recipe_on_voxceleb_style_fixtures(voxceleb_root: Path) -> None:
    found = get_recipe("folder").discover(voxceleb_root)
    assert [c.clip_id for c in found.clips] == ["00015", "00098"]
    assert {c.source_video for c in found.clips} == set(voxceleb_root.glob("*.mp4"))
    assert all(c.speaker == "unknown" and c.source_audio is None and c.words == [] for c in found.clips)
    assert all(c.split in {"train", "val", "test"} for c in found.clips)
    assert found.problems == []


def test_folder_ids_speakers_and_sidecars(voxceleb_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    a, b = voxceleb_root / "00015.mp4", voxceleb_root / "00098.mp4"
    _link(a, root / "alice" / "day1" / "take.mp4")
    _link(b, root / "alice" / "day2" / "take.mp4")
    _link(b, root / "bob" / "clip.MOV")
    _link(a, root / "loose.mkv")
    _link(a, root / ".hidden" / "x.mp4")
    (root / "bob" / "clip.wav").write_bytes(b"RIFF")
    (root / "bob" / "clip.txt").write_text("  hello\n  world \n")
    (root / "bob" / "notes.pdf").write_bytes(b"%PDF")
    (root / "empty" / "deeper").mkdir(parents=True)
    found = get_recipe("folder").discover(root)
    clips = found.by_id()
    assert sorted(clips) == ["alice__day1__take", "alice__day2__take", "bob__clip", "loose"]
    assert clips["alice__day1__take"].speaker == "alice" and clips["loose"].speaker == "unknown"
    assert clips["bob__clip"].source_audio == root / "bob" / "clip.wav"
    assert clips["bob__clip"].transcript == "hello world"
    assert clips["alice__day2__take"].source_audio is None
    assert found.problems == ["empty: folder holds no videos"]


def test_folder_same_stem_twice_is_reported(voxceleb_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "dupes"
    _link(voxceleb_root / "00015.mp4", root / "x.mp4")
    _link(voxceleb_root / "00098.mp4", root / "x.avi")
    found = get_recipe("folder").discover(root)
    assert [c.clip_id for c in found.clips] == ["x"]
    assert len(found.problems) == 1 and "same clip id 'x'" in found.problems[0]


def test_folder_split_follows_documented_hash(voxceleb_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "many"
    names = [f"spk{i % 3}/v{i:03d}.mp4" for i in range(60)]
    for name in names:
        _link(voxceleb_root / "00015.mp4", root / name)
    found = get_recipe("folder").discover(root, seed=5, fractions=(0.5, 0.25, 0.25))
    for clip in found.clips:
        h = int(hashlib.sha256(f"5:{clip.clip_id}".encode()).hexdigest()[:16], 16) / 2**64
        assert clip.split == ("train" if h < 0.5 else "val" if h < 0.75 else "test")
    # Adding videos never moves the old ones.
    for i in range(60, 90):
        _link(voxceleb_root / "00015.mp4", root / f"spk{i % 3}/v{i:03d}.mp4")
    grown = get_recipe("folder").discover(root, seed=5, fractions=(0.5, 0.25, 0.25)).by_id()
    assert len(grown) == 90
    assert all(grown[c.clip_id].split == c.split for c in found.clips)


def test_folder_bad_input(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        get_recipe("folder").discover(tmp_path / "missing")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x")
    with pytest.raises(CorpusError, match="no videos"):
        get_recipe("folder").discover(tmp_path)
    with pytest.raises(CorpusError, match="sum to 1"):
        rule_from_fractions((0.5, 0.5, 0.5))
    with pytest.raises(CorpusError, match="unknown options"):
        get_recipe("folder").discover(tmp_path, speakers="a")


def _voxceleb_tree(voxceleb_root: Path, base: Path) -> None:
    _link(voxceleb_root / "00015.mp4", base / "id00012" / "21Uxsk56VDQ" / "00001.mp4")
    _link(voxceleb_root / "00098.mp4", base / "id00012" / "21Uxsk56VDQ" / "00002.mp4")
    _link(voxceleb_root / "00098.mp4", base / "id10001" / "1zcIwhmdeo4" / "00001.mp4")


def test_voxceleb_layout_and_speaker_disjoint_split(voxceleb_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "vox"
    _voxceleb_tree(voxceleb_root, root)
    (root / "id99999").mkdir()
    found = get_recipe("voxceleb").discover(root, split="speaker-hash")
    assert [c.clip_id for c in found.clips] == [
        "id00012__21Uxsk56VDQ__00001",
        "id00012__21Uxsk56VDQ__00002",
        "id10001__1zcIwhmdeo4__00001",
    ]
    assert [c.speaker for c in found.clips] == ["id00012", "id00012", "id10001"]
    rule = rule_from_fractions((0.8, 0.1, 0.1), 0)
    assert all(c.split == rule.assign(c.speaker) for c in found.clips)  # one split per identity
    assert found.problems == ["id99999: speaker folder holds no videos"]
    by_clip = get_recipe("voxceleb").discover(root, split="hash")
    assert all(c.split == rule.assign(c.clip_id) for c in by_clip.clips)
    # the default protocol, official: none of these identities is on the committed test lists
    # (VoxCeleb1 test identities are id10270..id10309), so none is in test, one split per identity
    official = get_recipe("voxceleb").discover(root)
    assert {c.protocol for c in official.clips} == {"official"}
    assert all(c.split in ("train", "val") for c in official.clips)
    assert len({(c.speaker, c.split) for c in official.clips}) == len({c.speaker for c in official.clips})


def test_voxceleb2_release_folders_give_official_split(voxceleb_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "vox2"
    _voxceleb_tree(voxceleb_root, root / "dev" / "mp4")
    _link(voxceleb_root / "00015.mp4", root / "test" / "mp4" / "id00017" / "01dfn2spqyE" / "00001.mp4")
    found = get_recipe("voxceleb").discover(root, split="official")
    assert {c.clip_id: c.split for c in found.clips} == {
        "id00012__21Uxsk56VDQ__00001": "train",
        "id00012__21Uxsk56VDQ__00002": "train",
        "id10001__1zcIwhmdeo4__00001": "train",
        "id00017__01dfn2spqyE__00001": "test",
    }


def test_voxceleb_bad_input(voxceleb_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no idXXXXX"):
        get_recipe("voxceleb").discover(voxceleb_root)  # a flat folder is the folder recipe's job
    root = tmp_path / "shallow"
    _link(voxceleb_root / "00015.mp4", root / "id00001" / "00001.mp4")
    with pytest.raises(CorpusError, match="hold no"):
        get_recipe("voxceleb").discover(root)


def test_folder_recipe_on_a_voxceleb_tree_takes_identities_as_speakers(voxceleb_root: Path,
                                                                       tmp_path: Path) -> None:
    """``prepare folder`` on a VoxCeleb2 release used to make ``dev`` every clip's speaker."""
    root = tmp_path / "vox2"
    _voxceleb_tree(voxceleb_root, root / "dev" / "mp4")
    _link(voxceleb_root / "00015.mp4", root / "test" / "mp4" / "id00017" / "01dfn2spqyE" / "00001.mp4")
    found = get_recipe("folder").discover(root)
    assert {c.clip_id: c.speaker for c in found.clips} == {
        "dev__mp4__id00012__21Uxsk56VDQ__00001": "id00012",
        "dev__mp4__id00012__21Uxsk56VDQ__00002": "id00012",
        "dev__mp4__id10001__1zcIwhmdeo4__00001": "id10001",
        "test__mp4__id00017__01dfn2spqyE__00001": "id00017",
    }
    flat = get_recipe("folder").discover(tmp_path / "vox2" / "dev" / "mp4")
    assert {c.speaker for c in flat.clips} == {"id00012", "id10001"}


def test_recipes_record_their_protocol(voxceleb_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "vox"
    _voxceleb_tree(voxceleb_root, root)
    assert {c.protocol for c in get_recipe("voxceleb").discover(root).clips} == {"official"}
    assert {c.protocol for c in get_recipe("voxceleb").discover(root, split="speaker-hash").clips} == {
        "speaker-hash"}
    assert {c.protocol for c in get_recipe("voxceleb").discover(root, split="hash").clips} == {"hash"}
    assert {c.protocol for c in get_recipe("folder").discover(root).clips} == {"hash"}
