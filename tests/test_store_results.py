"""The results contract: typed records, the read helpers the leaderboard uses, one writer."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from talkface.store.results import (
    MetricSummary,
    Protocol,
    ResultRow,
    ResultsError,
    ResultsStore,
    parse_trim_flag,
    reference_id,
    trim_flag,
)
from talkface.utils.lock import WriterLock

INFO = {"corpus": "grid", "crop_size": 128, "fps": 25.0}


def _protocol(**change) -> Protocol:
    d = {"dataset": "grid", "protocol": "seen", "part": "test", "crop_size": 128,
         "reference": "/data/grid", "reference_id": reference_id(["a", "b"], INFO)}
    d.update(change)
    return Protocol.from_dict(d)


def _rows(method: str, values: dict[str, float], metric: str = "psnr", flags=()) -> list[ResultRow]:
    definition = {"name": metric, "variant": "v1", "higher_is_better": True}
    return [
        ResultRow(method, clip, metric, "v1", value, per_frame=np.full(3, value), flags=list(flags),
                  details={"reference_value": 2.0}, definition=definition)
        for clip, value in values.items()
    ]


def _record(protocol: Protocol | None = None) -> dict:
    return {"protocol": (protocol or _protocol()).to_dict(), "talkface_version": "x"}


def test_protocol_round_trip_and_differences() -> None:
    p = _protocol()
    assert Protocol.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert set(p.to_dict()) == {"dataset", "protocol", "part", "crop_size", "reference", "reference_id",
                                "identity_from"}
    moved = _protocol(reference="/elsewhere/grid")
    assert p.differences(moved) == [] and p.key() == moved.key()  # same set read from another path
    assert p.differences(_protocol(part="val")) == ["part: 'test' vs 'val'"]
    assert p.differences(_protocol(crop_size=256)) == ["crop_size: 128 vs 256"]
    other = Protocol.from_dict({**p.to_dict(), "identity_from": "same-clip"})
    assert p.differences(other) == [f"identity_from: {p.identity_from!r} vs 'same-clip'"]


def test_reference_id_is_the_clip_set_and_the_dataset() -> None:
    base = reference_id(["b", "a"], INFO)
    assert base == reference_id(["a", "b"], dict(INFO)) and len(base) == 16
    assert base != reference_id(["a"], INFO)  # a method scored on fewer clips is another protocol
    assert base != reference_id(["a", "b"], {**INFO, "crop_size": 256})


def test_result_row_round_trip() -> None:
    row = ResultRow("m", "c", "psnr", "v1", math.nan, per_frame=np.array([1.0, np.nan]),
                    error="video: broken", flags=["trimmed:3vs4", "resized"], details={"x": np.float32(1)})
    back = ResultRow.from_record(row.to_record())
    assert back.flags == row.flags and back.error == row.error and math.isnan(back.value)
    assert back.details == {"x": 1.0} and np.isnan(back.per_frame[1]) and back.key == "psnr:v1"
    assert trim_flag(40, 75) == "trimmed:40vs75" and parse_trim_flag("trimmed:40vs75") == (40, 75)
    assert parse_trim_flag("resized:1x1->2x2") is None


def test_read_helpers(tmp_path) -> None:
    store = ResultsStore(tmp_path / "res")
    with pytest.raises(ResultsError, match="holds no results"):
        ResultsStore.open(store.root)
    store.replace_method("ours", _rows("ours", {"a": 30.0, "b": 32.0}), _record())
    store.replace_method("old", _rows("old", {"a": 20.0, "b": 21.0}), {"talkface_version": "0"})
    store = ResultsStore.open(store.root)
    assert store.methods() == ["old", "ours"]
    assert store.protocol("ours") == _protocol() and store.protocol("old") is None
    assert store.run_record("ours")["talkface_version"] == "x"
    with pytest.raises(ResultsError, match="no run record for method 'nope'.*old, ours"):
        store.run_record("nope")
    s = store.metric_summaries("ours")["psnr:v1"]
    assert isinstance(s, MetricSummary) and s.mean == 31.0 and s.n_clips == 2 and s.higher_is_better
    assert s.reference_mean == 2.0 and s.ci95[0] <= 31.0 <= s.ci95[1]
    assert MetricSummary.from_dict(s.to_dict()) == s
    assert store.values("ours", "psnr").to_dict() == {"a": 30.0, "b": 32.0}
    assert [r.clip_id for r in store.rows("old")] == ["a", "b"]
    assert set(store.summary()["methods"]) == {"old", "ours"}
    store.summary_path.unlink()
    assert set(store.summary()["methods"]) == {"old", "ours"}  # rebuilt in memory, not written
    assert not store.summary_path.exists()


def test_summary_counts_trimmed_clips(tmp_path) -> None:
    store = ResultsStore(tmp_path)
    rows = _rows("m", {"a": 1.0}, flags=["trimmed:40vs75", "resized:1x1->2x2"])
    rows += _rows("m", {"b": 1.0}, flags=["trimmed:75vs74"]) + _rows("m", {"c": 1.0})
    store.replace_method("m", rows, _record())
    trimmed = store.summary()["methods"]["m"]["trimmed"]
    assert trimmed["n_clips"] == 2 and trimmed["frames_dropped_total"] == 36
    assert trimmed["frames_dropped_max"] == 35
    assert trimmed["clips"]["a"] == {"generated": 40, "reference": 75}


def test_replacing_a_method_keeps_the_others(tmp_path) -> None:
    store = ResultsStore(tmp_path)
    store.replace_method("a", _rows("a", {"x": 1.0, "y": 2.0}), _record())
    store.replace_method("b", _rows("b", {"x": 3.0}), _record())
    store.replace_method("a", _rows("a", {"x": 5.0}), _record())
    df = store.read()
    assert sorted(zip(df["method"], df["clip_id"], df["value"], strict=True)) == [
        ("a", "x", 5.0), ("b", "x", 3.0)
    ]


def test_a_writer_waits_for_another_writer_of_the_folder(tmp_path) -> None:
    store = ResultsStore(tmp_path)
    store.replace_method("a", _rows("a", {"x": 1.0}), _record())
    lock = WriterLock(tmp_path, "evaluate")
    lock.acquire()  # another run writing now
    threading.Timer(0.5, lock.release).start()
    t0 = time.monotonic()
    store.replace_method("b", _rows("b", {"x": 2.0}), _record())
    assert time.monotonic() - t0 >= 0.4
    assert store.methods() == ["a", "b"]


def test_run_records_follow_the_names_rule_and_keep_the_name(tmp_path) -> None:
    import hashlib

    store = ResultsStore(tmp_path / "res")
    store.replace_method("ours v2", _rows("ours v2", {"a": 1.0}), _record())
    stem = "ours-v2-" + hashlib.sha256(b"ours v2").hexdigest()[:10]
    assert sorted(p.name for p in (store.root / "runs").iterdir()) == [f"{stem}.json"]
    assert json.loads((store.root / "runs" / f"{stem}.json").read_text())["method"] == "ours v2"
    # results written before the rule named the file after the method itself: still read
    (store.root / "runs" / f"{stem}.json").rename(store.root / "runs" / "ours v2.json")
    assert store.has_run_record("ours v2") and store.run_record("ours v2")["method"] == "ours v2"
    # a file that records another method is not this one's
    (store.root / "runs" / "ours.json").write_text(json.dumps({"method": "Ours"}))
    with pytest.raises(ResultsError, match="holds the run record of method 'Ours', not 'ours'"):
        store.run_record("ours")
    with pytest.raises(ResultsError, match="holds method 'Ours', whose file name is the same as 'ours'"):
        store.replace_method("ours", _rows("ours", {"a": 1.0}), _record())
