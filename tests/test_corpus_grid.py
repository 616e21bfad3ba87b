"""GRID recipe: layouts, alignments checked against file names, Zenodo swaps, splits.

References are independent of the recipe: file listings on disk, hand-computed times (value / 25000),
the GRID grammar table in Cooke et al. (2006), and sha256 from hashlib.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.prepare.corpora import CorpusError, HashSplitRule, get_recipe
from talkface.prepare.corpora.base import data_manifests_dir, hash_fraction
from talkface.prepare.corpora.grid import (
    AlignmentError,
    decode_sentence,
    encode_sentence,
    load_seen_split,
    parse_align,
)

SPEAKERS = [f"s{i}" for i in range(1, 35)]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def _raw_words(path: Path) -> list[tuple[int, int, str]]:
    """The alignment file read the plain way (reference for the parser)."""
    rows = [line.split() for line in path.read_bytes().decode().split("\r\n") if line]
    return [(int(a), int(b), w) for a, b, w in rows]


# Zenodo layout on the real fixtures ---------------------------------------------------------------------


def test_zenodo_layout_discovers_all_fixture_clips(grid_root: Path) -> None:
    found = get_recipe("grid").discover(grid_root)
    on_disk = {f"{p.parent.name}_{p.stem}" for p in grid_root.glob("s*/*.mpg")}
    assert len(on_disk) == 127
    assert {c.clip_id for c in found.clips} == on_disk
    clips = found.by_id()
    assert clips["s23_priazn"].flags == ["no_alignment"] and clips["s23_priazn"].words == []
    assert all(c.flags == [] and len(c.words) == 6 for c in found.clips if c.clip_id != "s23_priazn")
    assert all(c.corpus == "grid" and c.speaker == c.clip_id.split("_")[0] for c in found.clips)
    assert all(c.source_audio is None for c in found.clips)  # no audio_25k in the fixtures
    assert any("s23" in p for p in found.problems)


def test_s1_bbaf2n_words(grid_root: Path) -> None:
    clip = get_recipe("grid").discover(grid_root).by_id()["s1_bbaf2n"]
    assert [w for _, _, w in clip.words] == "bin blue at f two now".split()
    assert clip.transcript == "bin blue at f two now"
    for start, end, _ in clip.words:
        assert 0.0 <= start < end <= 3.0
    assert [s for s, _, _ in clip.words] == sorted(s for s, _, _ in clip.words)
    # File line "23750 29500 bin": 23750 / 25000 = 0.95 s; "47250 53000 now" ends at 2.12 s.
    assert clip.words[0][:2] == pytest.approx((0.95, 1.18))
    assert clip.words[-1][1] == pytest.approx(2.12)


def test_every_s1_alignment_decodes_to_its_file_name(grid_root: Path) -> None:
    files = sorted((grid_root / "alignments" / "s1").glob("*.align"))
    assert len(files) == 125
    for path in files:
        raw = _raw_words(path)
        spoken = [w for _, _, w in raw if w not in ("sil", "sp")]
        assert decode_sentence(path.stem) == spoken, path.name
        assert encode_sentence(spoken) == path.stem
        parsed = parse_align(path)
        assert [(round(s * 25000), round(e * 25000), w) for s, e, w in parsed] == raw
        assert parsed[-1][1] <= 3.0


def test_grammar_hand_cases() -> None:
    # Cooke et al. 2006: command colour preposition letter digit adverb; 'z' is zero, no letter 'w'.
    assert decode_sentence("priazn") == ["place", "red", "in", "a", "zero", "now"]
    assert decode_sentence("swwp2s") == ["set", "white", "with", "p", "two", "soon"]
    assert decode_sentence("lgbx9a") == ["lay", "green", "by", "x", "nine", "again"]
    assert decode_sentence("bbaw2n") is None  # no letter w in GRID
    assert decode_sentence("bbaf0n") is None  # zero is 'z'
    assert decode_sentence("bbaf2") is None
    assert encode_sentence(["bin", "blue", "at", "f", "two"]) is None
    assert encode_sentence("put red at g nine now".split()) is None


def test_original_site_layout_gives_same_clips_and_words(grid_root: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    for video in grid_root.glob("s*/*.mpg"):
        spk = video.parent.name
        _link(video, site / spk / "video" / "mpg_6000" / video.name)
    for align in (grid_root / "alignments").glob("*/*.align"):
        _link(align, site / align.parent.name / "align" / align.name)
    zenodo = get_recipe("grid").discover(grid_root).by_id()
    ours = get_recipe("grid").discover(site).by_id()
    assert set(ours) == set(zenodo)
    for clip_id, clip in ours.items():
        assert clip.words == zenodo[clip_id].words
        assert clip.flags == zenodo[clip_id].flags
        assert clip.split == zenodo[clip_id].split
        assert clip.source_video.parent.name == "mpg_6000"


# Mismatched, swapped and malformed alignments ----------------------------------------------------------


def _zenodo_copy(grid_root: Path, root: Path, speakers: tuple[str, ...] = ("s1", "s2")) -> None:
    for spk in speakers:
        for video in (grid_root / spk).glob("*.mpg"):
            _link(video, root / spk / video.name)


def test_swapped_alignment_folder_is_noticed(grid_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "swapped"
    _zenodo_copy(grid_root, root)
    for align in (grid_root / "alignments" / "s2").glob("*.align"):  # s2's words under s1's name
        _link(align, root / "alignments" / "s1" / align.name)
    for align in (grid_root / "alignments" / "s1").glob("*.align"):  # and s1's under s2's
        _link(align, root / "alignments" / "s2" / align.name)
    found = get_recipe("grid").discover(root)
    assert len(found.clips) == 126
    assert all(c.flags == ["alignment_mismatch"] and c.words == [] for c in found.clips)
    s1_problem = [p for p in found.problems if p.startswith("s1:")]
    assert len(s1_problem) == 1 and "0%" in s1_problem[0] and "alignments/s2 (100%)" in s1_problem[0]
    assert any(p.startswith("s2:") and "mismatch" in p for p in found.problems)


def test_alignment_with_other_words_is_flagged(grid_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "edited"
    _zenodo_copy(grid_root, root, ("s1",))
    for align in (grid_root / "alignments" / "s1").glob("*.align"):
        _link(align, root / "alignments" / "s1" / align.name)
    target = root / "alignments" / "s1" / "bbaf2n.align"
    text = target.read_bytes().replace(b" two\r\n", b" three\r\n")
    target.unlink()
    target.write_bytes(text)
    found = get_recipe("grid").discover(root)
    clips = found.by_id()
    assert clips["s1_bbaf2n"].flags == ["alignment_mismatch"] and clips["s1_bbaf2n"].words == []
    assert sum(bool(c.flags) for c in found.clips) == 1
    assert any("bbaf2n" in p and "do not spell" in p for p in found.problems)


MALFORMED = {
    "bbas1s": b"0 23750 sil\r\n23750 29500\r\n",  # missing word
    "bbbf6n": b"0 2.5e4 sil\r\n",  # not integers
    "bbbs4n": b"",  # empty
    "bbif1a": b"\xff\xfe\x00garbage\x00\r\n",  # binary
    "bbir8p": b"0 23750 sil\r\n20000 19000 bin\r\n",  # end before start
}


def test_malformed_align_files_are_flagged_not_fatal(grid_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "malformed"
    _zenodo_copy(grid_root, root, ("s1",))
    for align in (grid_root / "alignments" / "s1").glob("*.align"):
        dst = root / "alignments" / "s1" / align.name
        if align.stem in MALFORMED:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(MALFORMED[align.stem])
        else:
            _link(align, dst)
    found = get_recipe("grid").discover(root)
    clips = found.by_id()
    assert len(clips) == 125
    for name in MALFORMED:
        assert clips[f"s1_{name}"].flags == ["alignment_malformed"] and clips[f"s1_{name}"].words == []
        with pytest.raises(AlignmentError):
            parse_align(root / "alignments" / "s1" / f"{name}.align")
    assert sum(bool(c.flags) for c in found.clips) == len(MALFORMED)
    assert any("5 malformed" in p for p in found.problems)


def test_videos_without_alignment_are_counted(grid_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "partial"
    _zenodo_copy(grid_root, root, ("s1",))
    aligns = sorted((grid_root / "alignments" / "s1").glob("*.align"))
    for align in aligns[:100]:
        _link(align, root / "alignments" / "s1" / align.name)
    found = get_recipe("grid").discover(root)
    missing = {f"s1_{a.stem}" for a in aligns[100:]}
    assert {c.clip_id for c in found.clips if c.flags == ["no_alignment"]} == missing
    assert all(len(c.words) == 6 for c in found.clips if c.clip_id not in missing)
    assert "s1: 25 of 125 videos have no alignment file in alignments/s1" in found.problems


def test_zenodo_swaps_apply_only_to_zenodo_layout(grid_root: Path, tmp_path: Path) -> None:
    # Pose s1's clips as speaker s5: the committed mapping says s5's words sit in alignments/s6.
    zen = tmp_path / "zen"
    site = tmp_path / "site"
    for video in (grid_root / "s1").glob("*.mpg"):
        _link(video, zen / "s5" / video.name)
        _link(video, site / "s5" / "video" / "mpg_6000" / video.name)
    for align in (grid_root / "alignments" / "s1").glob("*.align"):
        _link(align, zen / "alignments" / "s6" / align.name)
        _link(align, site / "s5" / "align" / align.name)
    assert all(len(c.words) == 6 for c in get_recipe("grid").discover(zen).clips)
    assert all(len(c.words) == 6 for c in get_recipe("grid").discover(site).clips)
    unswapped = get_recipe("grid").discover(zen, apply_swaps=False)
    assert all(c.flags == ["no_alignment"] for c in unswapped.clips)
    assert any("alignments/s6 matches 100%" in p for p in unswapped.problems)


def test_swap_table_is_well_formed() -> None:
    with open(data_manifests_dir() / "grid" / "zenodo_alignment_swaps.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) == {"video_speaker", "alignment_folder", "source"}
    speakers = [r["video_speaker"] for r in rows]
    folders = [r["alignment_folder"] for r in rows if r["alignment_folder"]]
    assert len(set(speakers)) == len(speakers) and set(speakers) <= set(SPEAKERS)
    assert len(set(folders)) == len(folders) and set(folders) <= set(SPEAKERS)  # no folder used twice
    assert all(r["source"] for r in rows)
    assert all(r["alignment_folder"] != r["video_speaker"] for r in rows)  # only real swaps listed


def test_audio_25k_wav_is_used_when_present(grid_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "with_audio"
    _zenodo_copy(grid_root, root, ("s2",))
    wav = root / "audio_25k" / "s2" / "swwp2s.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF")
    assert get_recipe("grid").discover(root).clips[0].source_audio == wav
    assert get_recipe("grid").discover(root, audio="video").clips[0].source_audio is None


def test_bad_roots_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        get_recipe("grid").discover(tmp_path / "nope")
    (tmp_path / "s21").mkdir()
    with pytest.raises(CorpusError, match="no GRID videos"):
        get_recipe("grid").discover(tmp_path)
    with pytest.raises(CorpusError, match="unknown split"):
        get_recipe("grid").discover(tmp_path, split="random")
    with pytest.raises(CorpusError, match="unknown corpus recipe"):
        get_recipe("timit")


def test_speaker_folder_without_videos_is_noted(grid_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "with_s21"
    _zenodo_copy(grid_root, root, ("s2",))
    (root / "s21").mkdir()
    found = get_recipe("grid").discover(root)
    assert [c.clip_id for c in found.clips] == ["s2_swwp2s"]
    assert any(p.startswith("s21: speaker folder holds no videos") for p in found.problems)


# Splits ----------------------------------------------------------------------------------------------


def test_speaker_independent_split_covers_every_speaker_once(grid_root: Path) -> None:
    with open(data_manifests_dir() / "grid" / "speaker_independent.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    speakers = [r["speaker"] for r in rows]
    assert sorted(speakers) == sorted(SPEAKERS) and len(speakers) == 34
    by_split: dict[str, set[str]] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["speaker"])
    assert set(by_split) == {"train", "val", "test"}
    assert by_split["test"] == {"s1", "s2", "s20", "s22"}  # LipNet's unseen-speaker protocol
    clips = get_recipe("grid").discover(grid_root, split="speaker-independent").by_id()
    assert clips["s1_bbaf2n"].split == "test" and clips["s23_priazn"].split == "train"


def test_seen_split_rule_file_matches_hashlib() -> None:
    rule = load_seen_split()
    assert rule.hash == "sha256"
    assert rule.fractions() == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1})
    for clip_id in ("s1_bbaf2n", "s34_swwz9a", "x"):
        h = int(hashlib.sha256(f"{rule.seed}:{clip_id}".encode()).hexdigest()[:16], 16) / 2**64
        assert hash_fraction(clip_id, rule.seed) == h
        expected = next(s for s, lo, hi in rule.bounds if lo <= h < hi)
        assert rule.assign(clip_id) == expected


def test_seen_split_fractions_on_10000_ids() -> None:
    rule = load_seen_split()
    ids = [f"s{1 + i % 34}_{i:06d}" for i in range(10_000)]
    counts: dict[str, int] = {}
    for clip_id in ids:
        split = rule.assign(clip_id)
        counts[split] = counts.get(split, 0) + 1
    for split, frac in rule.fractions().items():
        # binomial sd at n=10,000 is at most 0.005; 0.02 is four sd
        assert abs(counts[split] / len(ids) - frac) < 0.02, (split, counts)


@settings(max_examples=60, deadline=None)
@given(
    old=st.sets(st.text("abcdefghijklmnopqrstuvxyz0123456789_", min_size=1, max_size=12), max_size=40),
    new=st.sets(st.text("abcdefghijklmnopqrstuvxyz0123456789_", min_size=1, max_size=12), max_size=40),
    drop=st.integers(0, 40),
)
def test_hash_split_is_stable_under_adding_and_removing_ids(old: set[str], new: set[str], drop: int) -> None:
    rule = HashSplitRule(bounds=(("train", 0.0, 0.7), ("val", 0.7, 0.85), ("test", 0.85, 1.0)), seed=7)
    before = {i: rule.assign(i) for i in sorted(old)}
    changed = sorted(old | new)[drop:]  # some added, some removed
    after = {i: rule.assign(i) for i in changed}
    assert all(after[i] == before[i] for i in after.keys() & before.keys())


def test_seen_split_stable_when_corpus_grows(grid_root: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    videos = sorted((grid_root / "s1").glob("*.mpg"))
    for video in videos[::3]:
        _link(video, small / "s1" / video.name)
    before = {c.clip_id: c.split for c in get_recipe("grid").discover(small, split="seen").clips}
    after = {c.clip_id: c.split for c in get_recipe("grid").discover(grid_root, split="seen").clips}
    assert len(before) == 42 and before.items() <= after.items()
    assert set(after.values()) == {"train", "val", "test"}


def test_hash_rule_rejects_gaps() -> None:
    with pytest.raises(CorpusError, match="gap"):
        HashSplitRule(bounds=(("train", 0.0, 0.5), ("test", 0.6, 1.0)))
    with pytest.raises(CorpusError, match="cover"):
        HashSplitRule(bounds=(("train", 0.0, 0.5),))


def test_speaker_with_unknown_alignment_folder_gets_a_hint(grid_root: Path, tmp_path: Path) -> None:
    # The swap table knows no folder for s20's videos; a folder that matches them is named, not used.
    root = tmp_path / "s20"
    for video in (grid_root / "s1").glob("*.mpg"):
        _link(video, root / "s20" / video.name)
    for align in (grid_root / "alignments" / "s1").glob("*.align"):
        _link(align, root / "alignments" / "s21" / align.name)
    found = get_recipe("grid").discover(root)
    assert all(c.flags == ["no_alignment"] for c in found.clips)
    assert any(p.startswith("s20:") and "alignments/s21 matches 100%" in p for p in found.problems)


def test_grid_clips_carry_protocol_and_expected_duration(grid_root: Path) -> None:
    found = get_recipe("grid").discover(grid_root, split="seen").by_id()
    bbaf2n = found["s1_bbaf2n"]
    assert bbaf2n.protocol == "seen"
    assert bbaf2n.expected_duration_s == 74500 / 25000  # the last entry (silence) ends at 74500
    assert found["s23_priazn"].expected_duration_s is None  # no alignment, no claim
    assert {c.protocol for c in get_recipe("grid").discover(grid_root).clips} == {"speaker-independent"}


def test_recipes_are_registered_once_with_their_commands() -> None:
    from talkface.prepare.corpora import CORPORA, available_recipes
    from talkface.prepare.corpora.grid import GridRecipe

    assert {"folder", "grid", "voxceleb"} <= set(available_recipes())
    assert CORPORA.get("grid") is GridRecipe and GridRecipe.name == "grid"
    assert [o.flag for o in GridRecipe.options] == ["--audio"]
