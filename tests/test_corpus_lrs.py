"""LRS2 / LRS3-style recipe: layouts, ids, speakers (programmes for LRS2), official lists and folders,
transcripts with word tables, flags, hash protocols, and one fixture clip prepared with
``talkface prepare lrs``."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import talkface.prepare.corpora.lrs as lrs
from talkface.prepare.corpora import CorpusError, get_recipe

LRS2_MAIN = {  # id/utt -> transcript first line
    "5535415699068794046/00001": "Text:  IT'S A GREAT PLACE",
    "5535415699068794046/00002": "Text:  TO WORK",
    "6300370419826092098/00010": "Text:  HELLO THERE",
    "6330311066473698535/00011": "Text:  WE ARE LIVE",
    "6330311066473698535/00018": "Text:  FROM LONDON",
}
LRS3_TXT = ("Text:  AND SO THIS IS\nConf:  4\nRef:   https://www.youtube.com/watch?v=0af00UcTOSc\n\n"
            "WORD START END ASDSCORE\nAND 0.11 0.23 5.1\nSO 0.23 0.40 6.0\n"
            "THIS 0.40 0.61 6.2\nIS 0.61 0.80 5.9\n")


def _clip(folder: Path, key: str, text: str | None) -> Path:
    video = folder / f"{key}.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(b"")
    if text is not None:
        video.with_suffix(".txt").write_text(text + "\nConf:  3\n")
    return video


def _lrs2(root: Path) -> Path:
    for key, text in LRS2_MAIN.items():
        _clip(root / "mvlrs_v1" / "main", key, text)
    _clip(root / "mvlrs_v1" / "main", "9999999999999999999/00001", "Text:  NOT LISTED")
    _clip(root / "mvlrs_v1" / "pretrain", "5535415699068794046/00001", LRS3_TXT.replace("\nConf:  4", ""))
    (root / "train.txt").write_text("5535415699068794046/00001\n5535415699068794046/00002\n")
    (root / "val.txt").write_text("6300370419826092098/00010\n")
    (root / "test.txt").write_text("6330311066473698535/00011 NF\n6330311066473698535/00018 MV\n"
                                   "6330311066473698535/00099 NF\n")  # the last one is not on disk
    (root / "pretrain.txt").write_text("5535415699068794046/00001\n")
    return root


def _lrs3(root: Path) -> Path:
    _clip(root / "trainval", "0af00UcTOSc/50001", LRS3_TXT.split("\n", 1)[0])
    _clip(root / "trainval", "0af00UcTOSc/50002", None)  # no transcript
    _clip(root / "test", "0Fi83BHQsMA/00002", LRS3_TXT)
    _clip(root / "pretrain", "0af00UcTOSc/00001", LRS3_TXT)
    (root / "test" / "0Fi83BHQsMA" / "00003.mp4").write_bytes(b"")
    (root / "test" / "0Fi83BHQsMA" / "00003.txt").write_text("Conf: 3\nno text line\n")
    return root


def _recipe():
    return get_recipe("lrs")


def _hash(text: str, seed: int = 0) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big") / 2**64


def _part(h: float) -> str:
    return "train" if h < 0.8 else "val" if h < 0.9 else "test"


def test_lrs2_official_lists(tmp_path: Path) -> None:
    found = _recipe().discover(_lrs2(tmp_path))
    by_id = found.by_id()
    assert sorted(by_id) == sorted(k.replace("/", "__") for k in [*LRS2_MAIN, "9999999999999999999/00001"])
    parts = {c.clip_id: c.split for c in found.clips}
    assert parts["5535415699068794046__00001"] == "train" and parts["5535415699068794046__00002"] == "train"
    assert parts["6300370419826092098__00010"] == "val"
    assert parts["6330311066473698535__00011"] == "test" and parts["6330311066473698535__00018"] == "test"
    assert parts["9999999999999999999__00001"] == "unassigned"
    assert by_id["6330311066473698535__00011"].speaker == "6330311066473698535"  # a programme id
    assert by_id["5535415699068794046__00001"].transcript == "IT'S A GREAT PLACE"
    assert by_id["5535415699068794046__00001"].words == []  # main clips carry no word table
    assert all(c.protocol == "official" and c.corpus == "lrs" and not c.flags for c in found.clips)
    text = "\n".join(found.problems)
    assert "1 clip(s) are in no list file" in text and "9999999999999999999/00001" in text
    assert "test.txt: 1 of 3 listed clip(s) are not under" in text and "00099" in text
    assert "BBC programme, not a person" in text
    assert "pretrain" not in " ".join(by_id)  # pretrain skipped by default


def test_lrs2_pretrain_included_on_request(tmp_path: Path) -> None:
    found = _recipe().discover(_lrs2(tmp_path), pretrain="train")
    clip = found.by_id()["pretrain__5535415699068794046__00001"]
    assert clip.split == "train" and clip.speaker == "5535415699068794046"
    assert clip.words == [(0.11, 0.23, "AND"), (0.23, 0.40, "SO"), (0.40, 0.61, "THIS"), (0.61, 0.80, "IS")]
    assert clip.transcript == "AND SO THIS IS"
    assert "5535415699068794046__00001" in found.by_id()  # the main clip of the same name stays apart


def test_lrs3_folders_give_the_official_parts(tmp_path: Path) -> None:
    found = _recipe().discover(_lrs3(tmp_path))
    by_id = found.by_id()
    assert sorted(by_id) == ["0Fi83BHQsMA__00002", "0Fi83BHQsMA__00003", "0af00UcTOSc__50001",
                             "0af00UcTOSc__50002"]
    assert by_id["0af00UcTOSc__50001"].split == "train" and by_id["0Fi83BHQsMA__00002"].split == "test"
    assert by_id["0Fi83BHQsMA__00002"].speaker == "0Fi83BHQsMA"  # the talk's YouTube id
    assert by_id["0af00UcTOSc__50002"].flags == ["no_transcript"]
    assert by_id["0Fi83BHQsMA__00003"].flags == ["transcript_malformed"]
    assert by_id["0Fi83BHQsMA__00002"].transcript == "AND SO THIS IS"
    assert [w for _, _, w in by_id["0Fi83BHQsMA__00002"].words] == ["AND", "SO", "THIS", "IS"]
    assert any("without a 'Text:' first line" in p for p in found.problems)
    assert not any("programme" in p for p in found.problems)
    with_pre = _recipe().discover(tmp_path, pretrain="train").by_id()
    assert with_pre["pretrain__0af00UcTOSc__00001"].split == "train"


def test_hash_protocols_match_sha256_by_hand(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    for spk in ("alice", "bob", "carol"):
        for n in range(1, 5):
            _clip(root, f"{spk}/{n:05d}", "Text:  HI")
    found = _recipe().discover(root, split="speaker-hash")
    assert {c.speaker for c in found.clips} == {"alice", "bob", "carol"}
    for clip in found.clips:
        assert clip.split == _part(_hash(clip.speaker))  # a speaker's clips all in one part
    found = _recipe().discover(root, split="hash", seed=7)
    for clip in found.clips:
        assert clip.split == _part(_hash(clip.clip_id, 7))
    with pytest.raises(CorpusError, match="protocol 'official' needs LRS2 list files"):
        _recipe().discover(root)


def test_parse_transcript_by_hand(tmp_path: Path) -> None:
    txt = tmp_path / "a.txt"
    txt.write_text(LRS3_TXT)
    text, words = lrs.parse_transcript(txt)
    assert text == "AND SO THIS IS"
    assert words[0] == (0.11, 0.23, "AND") and words[-1] == (0.61, 0.80, "IS")
    txt.write_text("\n\nText:   two   spaces  \n")
    assert lrs.parse_transcript(txt) == ("two spaces", [])
    txt.write_text("Conf: 3\n")
    with pytest.raises(lrs.TranscriptError, match="first line is not 'Text:"):
        lrs.parse_transcript(txt)


def test_bad_input_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        _recipe().discover(tmp_path / "missing")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "test.txt").write_text("a/00001\n")
    with pytest.raises(CorpusError, match=r"expected <root>/mvlrs_v1/main/<id>/<utt>\.mp4"):
        _recipe().discover(tmp_path / "lists")
    (tmp_path / "empty" / "trainval").mkdir(parents=True)
    with pytest.raises(CorpusError, match="no <id>/<utt>.mp4 clips"):
        _recipe().discover(tmp_path / "empty")
    with pytest.raises(CorpusError, match="pretrain must be"):
        _recipe().discover(tmp_path / "empty", pretrain="yes")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "talkface.cli", *args]


def test_cli_prepares_an_lrs3_test_clip(tmp_path: Path, grid_root: Path) -> None:
    """A GRID fixture clip placed as an LRS3 test utterance, prepared with ``talkface prepare lrs``."""
    from talkface.store.dataset import Dataset

    root = tmp_path / "lrs3"
    video = root / "test" / "0Fi83BHQsMA" / "00002.mp4"
    video.parent.mkdir(parents=True)
    video.symlink_to(grid_root / "s1" / "bbaf2n.mpg")  # container probed by content, not by name
    video.with_suffix(".txt").write_text("Text:  BIN BLUE AT F TWO NOW\nConf:  4\n")
    out = tmp_path / "ds"
    run = subprocess.run(_cli("prepare", "lrs", str(root), "--out", str(out)), capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    ds = Dataset.open(out)
    rec = ds.record("0Fi83BHQsMA__00002")
    assert rec.status == "ok", rec.error
    assert (rec.corpus, rec.speaker, rec.split) == ("lrs", "0Fi83BHQsMA", "test")
    assert rec.transcript == "BIN BLUE AT F TWO NOW"
    assert rec.n_frames == round(rec.duration_s * 25)
    assert ds.parts().test == ["0Fi83BHQsMA__00002"]


def test_committed_voxceleb_test_identity_lists() -> None:
    """data_manifests/voxceleb (read by voxceleb.py's official protocol): counts from the
    papers (VoxCeleb1: 40 test identities id10270..id10309; VoxCeleb2: 118), sorted, no repeats."""
    import re

    from talkface.prepare.corpora.base import data_manifests_dir

    folder = data_manifests_dir() / "voxceleb"
    vox1 = (folder / "vox1_test_identities.txt").read_text().split()
    vox2 = (folder / "vox2_test_identities.txt").read_text().split()
    assert vox1 == [f"id{n}" for n in range(10270, 10310)]
    assert len(vox2) == len(set(vox2)) == 118 and vox2 == sorted(vox2)
    assert all(re.fullmatch(r"id0\d{4}", i) for i in vox2)  # VoxCeleb2 ids are id00012 .. id09272
    assert not {"id04170", "id05348"} & set(vox2)  # meta-file 'test' ids missing from the 118 (README)
