"""``talkface study analyze``: recovers a known truth, excludes inattentive participants, reports and
skips every kind of bad response file without a traceback, and refuses (one line) a damaged file or two
different files of one participant, which skipping would decide silently."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from test_study_support import TINY_METHODS, tiny_sources  # noqa: F401

from talkface.study.analyze import analyze, load_key, read_responses, run_analyze
from talkface.study.export import ExportConfig, run_export
from talkface.study.simulate import simulate
from talkface.study.sources import StudyError


def _key(sources, tmp: Path, methods=TINY_METHODS[:2], **kw) -> dict:
    cfg = ExportConfig(methods=[(m, sources[m]) for m in methods], out=tmp, **{
        "design": "ab", "clips": 4, "participants": 60, "seed": 1, "checks": 2, **kw})
    run_export(cfg, progress=False)
    return load_key(tmp / "key.json")


@pytest.fixture(scope="module")
def ab_key(tiny_sources, tmp_path_factory):  # noqa: F811
    return _key(tiny_sources, tmp_path_factory.mktemp("ab") / "study")


def _write(folder: Path, docs) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in docs:
        path = folder / f"p{doc['participant']:03d}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def test_ab_recovers_a_known_preference(ab_key):
    a, b = TINY_METHODS[:2]
    true_rate = 0.75  # Bradley-Terry: sigmoid(log 3) = 0.75
    docs = simulate(ab_key, {a: math.log(3), b: 0.0}, seed=3)
    for doc in docs:
        doc["_file"] = f"p{doc['participant']}"
    result = analyze(ab_key, docs)
    assert result["n_included"] == 60 and result["n_excluded_by_checks"] == 0
    for q in ("realism", "lipsync", "identity"):
        (row,) = result["pairs"][q]
        assert (row["a"], row["b"], row["n"]) == (a, b, 240)  # 60 participants x 4 clips
        assert row["ci_low"] < true_rate < row["ci_high"]
        assert abs(row["rate"] - true_rate) < 0.07
        assert row["p"] < 1e-6 and row["p_holm"] == row["p"]  # one pair: Holm changes nothing
    # no true preference: the rate sits near 0.5 and the test does not reject
    null = analyze(ab_key, [dict(d, _file="x") for d in simulate(ab_key, {}, seed=4)])
    assert all(r["p"] > 0.01 and r["ci_low"] < 0.5 < r["ci_high"] for r in null["pairs"]["realism"])


def test_inattentive_participants_are_excluded_and_counted(ab_key, tmp_path):
    docs = simulate(ab_key, {TINY_METHODS[0]: 1.0}, seed=5, inattentive=0.4)
    report, result, skipped = run_analyze(_key_path(ab_key, tmp_path),
                                          _write(tmp_path / "r", docs), tmp_path / "out")
    assert not skipped
    excluded = [p for p in result["participants"] if not p["included"]]
    assert 10 <= len(excluded) == result["n_excluded_by_checks"] <= 40
    assert all(p["checks_failed"] > 0 for p in excluded)
    assert result["n_included"] + len(excluded) == 60
    text = report.read_text()
    assert f"excluded after attention checks (more than 0 failed): {len(excluded)}" in text
    lenient = analyze(ab_key, [dict(d, _file="x") for d in docs], max_check_failures=99)
    assert lenient["n_included"] == 60


def _key_path(key: dict, tmp: Path) -> Path:
    path = tmp / "key.json"
    path.write_text(json.dumps(key))
    return path


def test_bad_files_are_reported_and_skipped(ab_key, tmp_path):
    good = simulate(ab_key, {TINY_METHODS[0]: 1.0}, seed=6, participants=[1, 2, 3])
    folder = tmp_path / "r"
    paths = _write(folder, good)
    bad: dict[str, object] = {}

    def variant(name, change):
        doc = copy.deepcopy(good[0])  # participant 1's answers, each spoilt in one way
        change(doc)
        bad[name] = doc

    variant("wrong_study", lambda d: d.update(study_id="tfs-0000000000000000"))
    variant("unknown_participant", lambda d: d.update(participant=999))
    variant("bool_participant", lambda d: d.update(participant=True))
    variant("swapped_videos", lambda d: d["trials"][0].update(videos=d["trials"][0]["videos"][::-1]))
    variant("answer_out_of_range", lambda d: d["trials"][1]["answers"].update(realism=2))
    variant("answer_bool", lambda d: d["trials"][1]["answers"].update(realism=True))
    variant("missing_question", lambda d: d["trials"][1]["answers"].pop("lipsync"))
    variant("too_fast", lambda d: d["trials"][2].update(answered_at_ms=d["trials"][2]["shown_at_ms"] + 50))
    variant("clock_backwards",
            lambda d: d["trials"][3].update(shown_at_ms=d["trials"][2]["shown_at_ms"] - 10))
    variant("incomplete", lambda d: d.update(trials=d["trials"][:-1]))
    variant("no_trials", lambda d: d.pop("trials"))
    variant("not_a_response", lambda d: d.update(format="something-else"))
    variant("nan_time", lambda d: d["trials"][0].update(shown_at_ms=float("nan")))
    variant("index_renumbered", lambda d: d["trials"][0].update(index=5))
    variant("trial_not_object", lambda d: d["trials"].__setitem__(0, "x"))
    for name, doc in bad.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    extra = {"list.json": b"[1, 2, 3]"}  # JSON, but no responses file (damaged bytes: see below)
    for name, data in extra.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    dup_same_bytes = folder / "zz_copy_of_p1.json"
    dup_same_bytes.write_bytes(paths[0].read_bytes())
    (folder / "a_directory.json").mkdir()
    paths += [dup_same_bytes, folder / "a_directory.json"]

    report, result, skipped = run_analyze(_key_path(ab_key, tmp_path), paths, tmp_path / "out")
    reasons = {Path(s.file).stem: s.reason for s in skipped}
    assert result["n_included"] == 3 and {p["participant"] for p in result["participants"]} == {1, 2, 3}
    assert len(skipped) == len(bad) + len(extra) + 2
    assert reasons["wrong_study"].startswith("wrong study")
    for name in ("unknown_participant", "bool_participant", "swapped_videos", "answer_out_of_range",
                 "answer_bool", "index_renumbered"):
        assert reasons[name].startswith("tampered"), (name, reasons[name])
    assert reasons["too_fast"].startswith("impossible timings")
    assert reasons["clock_backwards"].startswith("impossible timings")
    assert reasons["incomplete"].startswith("incomplete")
    assert reasons["zz_copy_of_p1"] == f"duplicate: the same bytes as {paths[0]}, which is kept"
    for name in ("list", "no_trials", "not_a_response", "nan_time", "missing_question", "trial_not_object"):
        assert reasons[name].startswith("malformed"), (name, reasons[name])
    assert reasons["a_directory"].startswith("cannot read")
    text = report.read_text()
    assert "| skipped file | reason |" in text and text.count("duplicate") >= 1


@pytest.mark.parametrize(("name", "data", "why"), [
    ("not_json.json", b"{nope", "(Expecting property name enclosed in double quotes"),
    ("empty.json", b"", "(empty (0 bytes))"),
    ("binary.json", bytes(range(256)), "('utf-8' codec can't decode"),
    ("latin1.json", "{\"caf\xe9\": 1}".encode("latin-1"), "('utf-8' codec can't decode"),
])
def test_a_damaged_file_stops_the_analysis(ab_key, tmp_path, name, data, why):
    paths = _write(tmp_path / "r", simulate(ab_key, {}, seed=6, participants=[1, 2]))
    (tmp_path / "r" / name).write_bytes(data)
    with pytest.raises(StudyError) as err:
        run_analyze(_key_path(ab_key, tmp_path), [*paths, tmp_path / "r" / name], tmp_path / "out")
    assert str(err.value).startswith(f"{tmp_path / 'r' / name} is damaged {why}")
    assert str(err.value).endswith(": get the file again from the participant, or leave it out of the "
                                   "command to analyse without it")
    assert not (tmp_path / "out").exists()


def test_two_files_of_one_participant_are_refused_naming_both(ab_key, tmp_path):
    first = simulate(ab_key, {}, seed=7, participants=[2])
    second = simulate(ab_key, {}, seed=8, participants=[2])
    first[0]["finished_at"], second[0]["finished_at"] = "2024-05-01T10:00:00Z", "2024-05-02T09:30:00Z"
    folder = tmp_path / "r"
    folder.mkdir()
    a, b = folder / "a_p2.json", folder / "b_p2_again.json"
    a.write_text(json.dumps(first[0]))
    b.write_text(json.dumps(second[0]))
    others = _write(folder, simulate(ab_key, {}, seed=9, participants=[1, 3]))
    with pytest.raises(StudyError) as err:
        run_analyze(_key_path(ab_key, tmp_path), [b, a, *others], tmp_path / "out")
    assert str(err.value) == (
        f"participant 2 answered in 2 different files: {a} (finished 2024-05-01T10:00:00Z), {b} (finished "
        "2024-05-02T09:30:00Z); pass only the file that counts (usually the first attempt) and leave the "
        "other out")
    # the analyst's choice: the first attempt alone
    report, result, skipped = run_analyze(_key_path(ab_key, tmp_path), [a, *others], tmp_path / "out")
    assert result["n_included"] == 3 and not skipped


def test_cli_says_which_copy_was_kept_and_refuses_two_attempts(ab_key, tmp_path):
    from typer.testing import CliRunner

    from talkface.cli import app

    paths = _write(tmp_path / "r", simulate(ab_key, {}, seed=10, participants=[1, 2]))
    copy_of_1 = tmp_path / "r" / "zz-p001-copy.json"  # after p001.json in name order
    copy_of_1.write_bytes(paths[0].read_bytes())
    key = _key_path(ab_key, tmp_path)
    result = CliRunner().invoke(app, ["study", "analyze", str(key), *map(str, paths), str(copy_of_1),
                                      "--out", str(tmp_path / "out")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "which is kept" in " ".join(result.output.split())  # (the terminal may wrap the paths)
    skipped = json.loads((tmp_path / "out" / "results.json").read_text())["skipped"]
    assert skipped == [{"file": str(copy_of_1),
                        "reason": f"duplicate: the same bytes as {paths[0]}, which is kept"}]
    assert "2 participants analysed, 0 excluded by attention checks, 1 files skipped" in result.output
    again = simulate(ab_key, {}, seed=11, participants=[1])[0]
    retake = tmp_path / "r" / "zz-p001-retake.json"
    retake.write_text(json.dumps(again))
    result = CliRunner().invoke(app, ["study", "analyze", str(key), *map(str, paths), str(retake),
                                      "--out", str(tmp_path / "out2")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error: ")]
    kept, later = json.loads(paths[0].read_text())["finished_at"], again["finished_at"]
    assert line.startswith(f"error: participant 1 answered in 2 different files: {paths[0]} (finished "
                           f"{kept}), {retake} (finished {later}); pass only the file that counts")


def test_no_usable_file_still_reports(ab_key, tmp_path):
    report, result, skipped = run_analyze(_key_path(ab_key, tmp_path), [tmp_path / "missing.json"],
                                          tmp_path / "out")
    assert result["n_included"] == 0 and skipped[0].reason.startswith("cannot read")
    assert "| 0 | 0 | – | – | – | – |" in report.read_text()
    def no_constants(name):
        raise AssertionError(f"results.json holds {name}")

    json.loads((tmp_path / "out" / "results.json").read_text(), parse_constant=no_constants)


def test_mos_and_real_or_fake(tiny_sources, tmp_path):  # noqa: F811
    strengths = {"alphamethod": 1.2, "betamethod": 0.0, "gammamethod": -1.2}
    mos = _key(tiny_sources, tmp_path / "mos", methods=TINY_METHODS, design="mos", participants=30, checks=1)
    result = analyze(mos, [dict(d, _file="x") for d in simulate(mos, strengths, seed=7)])
    assert result["n_excluded_by_checks"] == 0
    for q, block in result["mos"].items():
        means = {r["method"]: r["mean"] for r in block["methods"]}
        assert means["alphamethod"] > means["betamethod"] > means["gammamethod"], q
        assert abs(means["alphamethod"] - 4.2) < 0.35 and abs(means["gammamethod"] - 1.8) < 0.35
        assert all(t["p_holm"] < 0.001 and t["p_holm"] >= t["p"] for t in block["tests"])
        assert result["agreement"][q]["alpha_interval"] > 0.5

    rf = _key(tiny_sources, tmp_path / "rf", methods=TINY_METHODS, design="real-or-fake", participants=40,
              checks=1)
    result = analyze(rf, [dict(d, _file="x") for d in simulate(rf, {"alphamethod": 2.0}, seed=8)])
    rates = {r["method"]: r for r in result["real_or_fake"]["methods"]}
    # sigmoid(2) = 0.881: a 95% interval of one simulated study misses it one time in twenty (a fresh
    # environment's draw put it 0.0001 above the interval), so the check is the interval's centre within
    # its own half-width plus a margin of two points
    low, high = rates["alphamethod"]["ci_low"], rates["alphamethod"]["ci_high"]
    assert abs((low + high) / 2 - 0.881) < (high - low) / 2 + 0.02 and high - low < 0.2
    assert rates["betamethod"]["ci_low"] < 0.5 < rates["betamethod"]["ci_high"]
    report = run_analyze(_key_path(rf, tmp_path), _write(tmp_path / "rfr", simulate(rf, {}, seed=1)),
                         tmp_path / "rfo")[0]
    assert "## Judged real" in report.read_text() and (tmp_path / "rfo" / "plot_judgement.png").exists()


def test_agreement_is_one_when_everyone_agrees(ab_key):
    # every participant prefers the first method on every item: alpha is undefined without variation,
    # so give the second method one clip it always wins
    a, b = TINY_METHODS[:2]
    docs = simulate(ab_key, {a: 50.0, b: 0.0}, seed=1)
    losing_clip = ab_key["clips"][0]
    for doc in docs:
        for t in doc["trials"]:
            meta = [ab_key["media"][v] for v in t["videos"]]
            if meta[0]["clip"] == losing_clip and all(m["variant"] == "original" for m in meta):
                for q in t["answers"]:
                    t["answers"][q] = [m["method"] for m in meta].index(b)
        doc["_file"] = "x"
    result = analyze(ab_key, docs)
    assert result["agreement"]["realism"]["alpha_nominal"] == pytest.approx(1.0)


def test_report_escapes_names(tiny_sources, tmp_path):  # noqa: F811
    srcs = {"<b>x</b> | y": tiny_sources[TINY_METHODS[0]], "$a$": tiny_sources[TINY_METHODS[1]]}
    run_export(ExportConfig(methods=list(srcs.items()), out=tmp_path / "s", clips=2, participants=4,
                            checks=0), progress=False)
    key = load_key(tmp_path / "s" / "key.json")
    report = run_analyze(tmp_path / "s" / "key.json", _write(tmp_path / "r", simulate(key, {}, seed=2)),
                         tmp_path / "o")[0].read_text()
    assert "&lt;b&gt;x&lt;/b&gt; \\| y" in report and "<b>" not in report
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["methods"] == ["<b>x</b> | y", "$a$"]


def test_key_errors(tmp_path):
    (tmp_path / "k.json").write_text('{"format": "other"}')
    with pytest.raises(StudyError, match="not a talkface study key"):
        load_key(tmp_path / "k.json")
    with pytest.raises(StudyError, match="cannot read"):
        load_key(tmp_path / "missing.json")
    assert read_responses({"study_id": "x", "participants": []}, []) == ([], [])
