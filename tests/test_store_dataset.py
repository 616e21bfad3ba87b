"""The dataset contract: DatasetInfo / ClipRecord round trips, one usable rule, protocols added without
rewriting another, parts with the validation fallback, old datasets opened, one clear error each.

Stores here are built through the writer with hand-written rows (no media), so every expected value is
written out by hand; the real GRID path is in tests/test_prepare.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from talkface.prepare.corpora.base import hash_fraction
from talkface.store import ClipRecord, Dataset, DatasetError, DatasetInfo, is_usable
from talkface.store.dataset import BackendInfo, hash_val_split, protocol_counts
from talkface.store.dataset_writer import DatasetStore, SettingsMismatch

SETTINGS = {"corpus": "synthetic", "fps": 25.0, "crop_size": 256,
            "landmark_backend": "dlib",
            "landmark_options": {"backend": "dlib", "predictor_sha256": "ab" * 32, "dlib_version": "20.0"},
            "feature_backend": "logmel", "feature_options": {"backend": "logmel", "dim": 40}}


def _row(cid: str, part: str, status: str = "ok", speaker: str = "p1") -> dict:
    return {"clip_id": cid, "corpus": "synthetic", "speaker": speaker, "split": part, "status": status,
            "n_frames": 10, "fps": 25.0, "flags": "" if status == "ok" else "no_face_frames=4",
            "face_ratio": 1.0 if status == "ok" else 0.6}


def _store(root: Path, parts: dict[str, str], protocol: str = "alpha", statuses: dict | None = None
           ) -> DatasetStore:
    store = DatasetStore(root)
    store.claim(SETTINGS)
    store.add_protocol(protocol, parts)
    for cid, part in parts.items():
        store.write_row(_row(cid, part, (statuses or {}).get(cid, "ok")))
    store.write_manifest()
    return store


def test_info_and_record_round_trip() -> None:
    info = DatasetInfo.from_settings(SETTINGS, created="2026-01-01T00:00:00")
    info.default_protocol = "seen"
    info.protocols = {"seen": {"train": 3, "val": 1, "test": 1}}
    assert DatasetInfo.from_dict(info.to_dict()) == info
    assert info.crop_size == 256 and info.fps == 25.0 and info.corpus == "synthetic"
    assert info.landmark_backend == BackendInfo("dlib", "20.0", None, {"predictor": "ab" * 32})
    assert info.feature_backend.name == "logmel" and info.feature_backend.dim == 40
    rec = ClipRecord(clip_id="a", corpus="c", speaker="s", status="partial", flags=["no_face_frames=3", "x"],
                     n_frames=5, split="train", parts={"seen": "train", "other": "test"})
    row = rec.to_dict()
    assert row["flags"] == "no_face_frames=3;x"
    assert row["split_seen"] == "train" and row["split_other"] == "test"
    assert ClipRecord.from_dict(row) == rec
    assert rec.flag("no_face_frames") == "3" and rec.flag("x") == "" and rec.flag("y") is None
    with pytest.raises(DatasetError, match="format"):
        DatasetInfo.from_dict({"corpus": "grid"})


def test_one_usable_rule() -> None:
    assert is_usable({"status": "ok"}) and is_usable(ClipRecord("a", status="ok"))
    assert not is_usable({"status": "partial"}) and not is_usable(ClipRecord("a", status="failed"))
    assert not is_usable(pd.Series({"status": "partial"}))
    assert is_usable(next(pd.DataFrame([{"status": "ok"}]).itertuples()))


def test_open_parts_and_usable_clips(tmp_path: Path) -> None:
    parts = {"c1": "train", "c2": "train", "c3": "val", "c4": "test", "c5": "train", "c6": "test"}
    _store(tmp_path, parts, statuses={"c5": "partial", "c6": "failed"})
    ds = Dataset.open(tmp_path)
    assert ds.protocols() == ["alpha"] and ds.default_protocol == "alpha"
    assert ds.crop_size == 256 and ds.fps == 25.0 and ds.corpus == "synthetic"
    p = ds.parts()
    assert (p.protocol, p.train, p.val, p.test) == ("alpha", ["c1", "c2"], ["c3"], ["c4"])
    assert ds.parts("alpha") == p and p["train"] == p.train and p.as_dict()["test"] == ["c4"]
    assert ds.info.protocols == {"alpha": {"train": 2, "val": 1, "test": 1}}  # usable clips only
    assert ds.record("c5").status == "partial" and ds.record("c5").part("alpha") == "train"
    assert [r.clip_id for r in ds.records(usable_only=True)] == ["c1", "c2", "c3", "c4"]
    assert len(ds) == 6 and "c6" in ds
    with pytest.raises(DatasetError, match=r"holds no split protocol 'seen' \(it holds: alpha\)"):
        ds.parts("seen")
    with pytest.raises(DatasetError, match="not in"):
        ds.record("nope")


def test_require_names_what_the_protocol_holds(tmp_path: Path) -> None:
    _store(tmp_path, {"t1": "test", "t2": "test"})
    parts = Dataset.open(tmp_path).parts()
    assert parts.train == [] and parts.test == ["t1", "t2"]  # a test-only store is fine for generation
    parts.require("test")
    with pytest.raises(DatasetError) as err:
        parts.require("train")
    assert str(err.value) == (f"{tmp_path}: protocol 'alpha' has no usable 'train' clips (it holds: test 2): "
                              "pass `--part test`, or choose another --protocol")
    with pytest.raises(DatasetError) as err:
        parts.require("train", flag=None)  # a command that cannot choose its part (training)
    assert str(err.value) == f"{tmp_path}: protocol 'alpha' has no usable 'train' clips (it holds: test 2)"


def test_a_part_with_no_clips_says_which_flag_to_use(tmp_path: Path) -> None:
    """The tour's `--part test` on a small `seen` store whose clips are all in train and val."""
    from typer.testing import CliRunner

    from talkface.cli import app

    _store(tmp_path / "d", {"a": "train", "b": "train", "c": "val"}, protocol="seen")
    result = CliRunner().invoke(app, ["baseline", "static-frame", "--data", str(tmp_path / "d"),
                                      "--part", "test", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert " ".join(result.output.split()) == (
        f"error: {tmp_path / 'd'}: protocol 'seen' has no usable 'test' clips (it holds: train 2, val 1): "
        "pass `--part train` or `--part val`, or choose another --protocol")
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_val_fallback_is_a_seeded_hash_of_train(tmp_path: Path) -> None:
    ids = [f"c{i:02d}" for i in range(20)]
    _store(tmp_path, dict.fromkeys(ids, "train"))
    ds = Dataset.open(tmp_path)
    assert ds.parts().val == [] and not ds.parts().val_from_train
    p = ds.parts(val_fallback_seed=3)
    expected_val = sorted(sorted(ids, key=lambda c: hash_fraction(c, 3))[:2])  # 10% of 20
    assert p.val == expected_val and p.val_from_train
    assert sorted(p.train + p.val) == ids and not set(p.train) & set(p.val)
    assert ds.parts(val_fallback_seed=3) == p  # deterministic
    assert hash_val_split(["only"], 0) == (["only"], [])


def test_adding_a_protocol_never_rewrites_another(tmp_path: Path) -> None:
    store = _store(tmp_path, {"a": "train", "b": "test"})
    first = store.protocol_path("alpha").read_bytes()
    change = store.add_protocol("beta", {"a": "test", "b": "train"})
    assert change.added and not change.default and change.moved == 0
    store.write_manifest()
    assert store.protocol_path("alpha").read_bytes() == first
    ds = Dataset.open(tmp_path)
    m = ds.manifest().set_index("clip_id")
    assert m["split"].to_dict() == {"a": "train", "b": "test"}  # the default protocol's parts
    assert m["split_alpha"].to_dict() == {"a": "train", "b": "test"}
    assert m["split_beta"].to_dict() == {"a": "test", "b": "train"}
    assert ds.protocols() == ["alpha", "beta"] and ds.info.default_protocol == "alpha"
    assert ds.parts("beta").train == ["b"] and ds.parts().train == ["a"]
    assert ds.info.protocols["beta"] == {"train": 1, "val": 0, "test": 1}
    # the same protocol again with a changed rule is counted, and still only touches its own file
    again = store.add_protocol("beta", {"a": "val"})
    assert not again.added and again.moved == 1
    assert store.protocol_path("alpha").read_bytes() == first


def test_settings_claim_refuses_changes(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.claim(SETTINGS)
    store.claim({**SETTINGS, "talkface_version": "9.9"})  # the version alone is no difference
    with pytest.raises(SettingsMismatch, match="crop_size: prepared with 256, asked for 128"):
        store.claim({**SETTINGS, "crop_size": 128})
    info = store.claim({**SETTINGS, "crop_size": 128}, overwrite=True)
    assert info.crop_size == 128 and store.read_info().crop_size == 128


def _legacy(root: Path, rows: list[dict], settings: dict | None) -> None:
    """A dataset as talkface wrote it before DatasetInfo: settings JSON, rows, one split column."""
    store = DatasetStore(root)
    for row in rows:
        store.write_row(row)
    if settings is not None:
        (root / "talkface_dataset.json").write_text(json.dumps(settings))
    store.write_manifest()


def test_old_dataset_opens_with_derived_info(tmp_path: Path) -> None:
    _legacy(tmp_path, [_row("a", "train"), _row("b", "val"), _row("c", "test", "partial")],
            {**SETTINGS, "crop_size": 128})
    ds = Dataset.open(tmp_path)
    assert ds.info.legacy and ds.crop_size == 128 and ds.fps == 25.0 and ds.corpus == "synthetic"
    assert ds.protocols() == ["default"]  # no recipe can name the protocol of a synthetic corpus
    p = ds.parts()
    assert (p.train, p.val, p.test) == (["a"], ["b"], [])
    assert ds.info.landmark_backend.model_sha256 == {"predictor": "ab" * 32}


def test_old_grid_dataset_protocol_is_recognised(tmp_path: Path) -> None:
    from talkface.prepare.corpora.grid import load_seen_split

    rule = load_seen_split()
    ids = ["s1_bbaf2n", "s1_bbas1s", "s1_bbbf6n", "s2_swwp2s"]
    rows = [{**_row(c, rule.assign(c), speaker=c.split("_")[0]), "corpus": "grid"} for c in ids]
    _legacy(tmp_path, rows, {**SETTINGS, "corpus": "grid"})
    ds = Dataset.open(tmp_path)
    assert ds.protocols() == ["seen"]
    assert sorted(ds.parts("seen").train + ds.parts("seen").val + ds.parts("seen").test) == ids


def test_hand_built_store_without_settings_reads_crop_size_from_its_rows(tmp_path: Path) -> None:
    _legacy(tmp_path, [{**_row("a", "train"), "crop_size": 128}], None)
    assert Dataset.open(tmp_path).crop_size == 128
    other = tmp_path / "no_crop"
    _legacy(other, [_row("a", "train")], None)
    with pytest.raises(DatasetError, match="records no crop size"):
        _ = Dataset.open(other).crop_size  # never a guessed 128


def test_old_dataset_gains_a_protocol_without_losing_its_split(tmp_path: Path) -> None:
    _legacy(tmp_path, [_row("a", "train"), _row("b", "test")], SETTINGS)
    store = DatasetStore(tmp_path)
    store.claim(SETTINGS)  # upgrades the info; the old split becomes protocol 'default'
    store.add_protocol("beta", {"a": "test", "b": "test"})
    store.write_manifest()
    ds = Dataset.open(tmp_path)
    assert not ds.info.legacy and ds.protocols() == ["default", "beta"]
    assert ds.manifest().set_index("clip_id")["split"].to_dict() == {"a": "train", "b": "test"}
    assert ds.parts("beta").test == ["a", "b"]


@pytest.mark.parametrize("case", ["missing", "file", "empty", "bad_info", "bad_manifest"])
def test_not_a_dataset_is_one_sentence(tmp_path: Path, case: str) -> None:
    path = tmp_path / "d"
    if case == "file":
        path.write_text("x")
    elif case != "missing":
        path.mkdir()
    if case == "bad_info":
        _store(path, {"a": "train"})
        (path / "talkface_dataset.json").write_text("{not json")
    if case == "bad_manifest":
        (path / "manifest.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(DatasetError) as err:
        Dataset.open(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert isinstance(err.value, ValueError)


def test_a_corpus_folder_is_prepared_into_a_new_folder(tmp_path: Path) -> None:
    """Passing the raw corpus where a prepared dataset is asked for: prepare it, into another folder."""
    corpus = tmp_path / "grid"
    (corpus / "s1").mkdir(parents=True)
    (corpus / "s1" / "bbaf2n.mpg").write_bytes(b"\0" * 16)
    with pytest.raises(DatasetError) as err:
        Dataset.open(corpus)
    assert str(err.value) == (f"{corpus} holds videos or audio but is not a prepared dataset: prepare it "
                              f"first with `talkface prepare <corpus> {corpus} --out <a new folder>` and "
                              "pass that folder")
    empty = tmp_path / "new"
    empty.mkdir()
    with pytest.raises(DatasetError) as err:
        Dataset.open(empty)
    assert str(err.value) == (f"{empty} is not a prepared dataset (no manifest.parquet and no finished "
                              "clips): prepare a corpus into it with `talkface prepare <corpus> <corpus "
                              f"folder> --out {empty}`")
    _store(tmp_path / "d", {"a": "train"})
    (tmp_path / "d" / "crops").mkdir()
    with pytest.raises(DatasetError) as err:
        Dataset.open(tmp_path / "d" / "crops")
    assert str(err.value) == (f"{tmp_path / 'd' / 'crops'} is a folder inside the prepared dataset "
                              f"{(tmp_path / 'd').resolve()}: pass {(tmp_path / 'd').resolve()}")


def test_unfinished_run_opens_from_its_rows(tmp_path: Path) -> None:
    store = _store(tmp_path, {"a": "train", "b": "val"})
    store.manifest_path.unlink()  # killed before the manifest was rebuilt
    ds = Dataset.open(tmp_path)
    assert ds.parts().train == ["a"] and ds.parts().val == ["b"]


def test_load_clip_and_paths(tmp_path: Path) -> None:
    store = _store(tmp_path, {"a": "train"})
    store.write_clip("a", landmarks_aligned=np.ones((3, 68, 2), np.float32))
    ds = Dataset.open(tmp_path)
    assert ds.load_clip("a")["landmarks_aligned"].shape == (3, 68, 2)
    assert ds.clip_path("a") == tmp_path / "clips" / "a.npz"
    assert ds.crop_path("a") == tmp_path / "crops" / "a.mp4"
    with pytest.raises(FileNotFoundError):
        ds.load_clip("b")


def test_protocol_counts_keep_other_labels() -> None:
    df = pd.DataFrame({"status": ["ok", "ok", "partial", "ok"],
                       "split": ["train", "unassigned", "train", None]})
    assert protocol_counts(df, "split") == {"train": 1, "val": 0, "test": 0, "unassigned": 1}


def test_protocol_added_by_a_stopped_run_is_read_from_its_file(tmp_path: Path) -> None:
    store = _store(tmp_path, {"a": "train", "b": "test"})
    store.add_protocol("beta", {"a": "test", "b": "val"})  # stopped before write_manifest()
    ds = Dataset.open(tmp_path)
    assert ds.protocols() == ["alpha", "beta"]
    assert (ds.parts("beta").test, ds.parts("beta").val) == (["a"], ["b"])
