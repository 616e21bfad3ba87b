"""Every measured figure in README.md and docs/*.md is the one its results file gives (issue 19).

scripts/render_figures.py renders the regions between ``<!-- figures:NAME begin -->`` and ``<!--
figures:NAME end -->`` and the inline ``<!-- fig SPEC -->`` figures from benchmarks/results/; here its
check mode must find nothing stale, and its parts are tested on small hand-written cases.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import render_figures as rf  # noqa: E402


def test_readme_and_docs_agree_with_results_files(capsys) -> None:
    rc = rf.main(["--check"])
    out = capsys.readouterr().out
    assert rc == 0, f"figures differ from benchmarks/results/ (run python scripts/render_figures.py):\n{out}"


def test_every_region_is_in_its_document() -> None:
    for region in rf.REGIONS.values():
        for doc in region.docs:
            text = (ROOT / doc).read_text(encoding="utf-8")
            assert f"<!-- figures:{region.name} begin" in text, (doc, region.name)
            assert f"<!-- figures:{region.name} end -->" in text, (doc, region.name)
            for source in region.sources:
                assert (ROOT / source if "/" in source else rf.RESULTS / source).is_file(), source


def test_rewrite_on_a_hand_written_case() -> None:
    text = (
        "Intro.\n\n"
        "<!-- figures:demo begin -->\n| old | table |\n<!-- figures:demo end -->\n\n"
        "Prose with <!-- fig a.json:x.y .1f -->9.9<!-- /fig --> units and "
        "<!-- fig a.json:x.y .1f -->1.2<!-- /fig --> again.\n"
    )
    regions = {"demo": (("a.json",), "| new | table |\n| --- | --- |")}
    figures = {"a.json:x.y .1f": "1.2"}
    new, changes = rf.rewrite(text, regions.__getitem__, figures.__getitem__)
    assert new == (
        "Intro.\n\n"
        f"{rf.begin_marker('demo', ('a.json',))}\n"
        "| new | table |\n| --- | --- |\n<!-- figures:demo end -->\n\n"
        "Prose with <!-- fig a.json:x.y .1f -->1.2<!-- /fig --> units and "
        "<!-- fig a.json:x.y .1f -->1.2<!-- /fig --> again.\n"
    )
    assert [(c.kind, c.name) for c in changes] == [("region", "demo"), ("figure", "a.json:x.y .1f")]
    assert changes[1].old == "9.9" and changes[1].new == "1.2"
    # the prose around the markers is kept, and a second pass changes nothing
    again, changes = rf.rewrite(new, regions.__getitem__, figures.__getitem__)
    assert again == new and changes == []
    # a begin marker without its end marker is an error, not silently skipped
    _, changes = rf.rewrite("<!-- figures:demo begin -->\ntext\n", regions.__getitem__, figures.__getitem__)
    assert [c.kind for c in changes] == ["error"]


def test_inline_figures_read_paths_selectors_and_formats() -> None:
    res = rf.Results(data={"r.json": {
        "a": {"b": 2.875, "list": [10, 20]},
        "targets": [{"a": "x", "metric": "psnr", "diff": 0.0896, "diff_lo": 0.0191, "diff_hi": 0.163},
                    {"a": "y", "metric": "psnr", "diff": -1.0, "diff_lo": -2.0, "diff_hi": -0.5}],
    }})
    assert rf.inline_figure("r.json:a.b .2f", res) == "2.88"
    assert rf.inline_figure("r.json:a.list.1", res) == "20"
    assert rf.inline_figure("r.json:a.b*100 .0f", res) == "288"
    assert rf.inline_figure("r.json:targets[a=y,metric=psnr].diff +.1f", res) == "-1.0"
    assert rf.inline_figure("r.json:targets[a=x] ci+.2f", res) == "+0.09 [+0.02, +0.16]"
    with pytest.raises(KeyError):
        rf.inline_figure("r.json:a.missing", res)
    assert rf.inline_figure("r.json:a.list.length", res) == "2"
    assert rf.inline_figure("r.json:targets.length", res) == "2"


def test_inline_provenance_and_figures_whose_keys_hold_dots() -> None:
    floors = {"date": "2026-12-07T08:47:35+00:00", "machine": {"cpu": "AMD EPYC", "cores": 2},
              "load_average_before": [1.0, 2.0, 3.0], "load_average_after": [1.5, 2.5, 3.5],
              "clips_chosen": ["a", "b", "c"], "clips_not_ok": ["b"],
              "metrics": {"blink_rate:ear-adaptive0.75-min2": {"mean_abs_difference": 4.0}},
              "lmd_redetection": {"mean_lmd_mouth_tracked": 0.44, "mean_lmd_mouth_redetected": 0.45,
                                  "mean_lmd_face_tracked": 0.52, "mean_lmd_face_redetected": 0.55}}
    res = rf.Results(data={"metric_floors.json": floors})
    assert rf.inline_figure("provenance:metric_floors.json", res) == (
        "`metric_floors.json`: 2026-12-07 08:47 UTC; AMD EPYC, 2 cores; load average 1.00/2.00/3.00 at the "
        "start, 1.50/2.50/3.50 at the end (1/5/15 min)")
    assert rf.inline_figure("floors.blink-rate", res) == "4.0"  # "0.75" in the key: no dotted path
    assert rf.inline_figure("floors.failed", res) == (
        "1 of the 3 chosen clips (`b`) is not scored (prepared with a status other than ok)")
    # the verdict on re-detection follows the numbers
    assert rf.inline_figure("floors.redetect-verdict", res) == "does not lower it"
    floors["lmd_redetection"].update(mean_lmd_mouth_redetected=0.30, mean_lmd_face_redetected=0.40)
    assert rf.inline_figure("floors.redetect-verdict", res) == "lowers it"


def test_identity_separation_verdict_follows_the_file() -> None:
    rows = [{"label": "same", "euclidean": 0.15, "cosine": 0.99},
            {"label": "other", "euclidean": 0.9, "cosine": 0.8}]
    d = {"rows": rows, "threshold": 0.6, "largest_same_speaker_euclidean": 0.15,
         "smallest_other_speaker_euclidean": 0.9, "separated_at_threshold": True, "identity_image": "x",
         "frame_step": 15, "landmarks": "dlib"}
    text = rf.render_identity_separation(rf.Results(data={"identity_separation.json": d}))
    assert "| same | 0.150 | 0.990 |" in text and "threshold separates" in text
    d["separated_at_threshold"] = False
    text = rf.render_identity_separation(rf.Results(data={"identity_separation.json": d}))
    assert "does **not** separate" in text


def test_a_target_verdict_follows_the_number() -> None:
    assert rf.verdict(2.88, 3.0) == "not met"
    assert rf.verdict(3.0, 3.0) == "met"
    assert rf.verdict(411.0, 1024.0, higher_is_better=False) == "met"
    assert rf.verdict(0.9, 0.5, higher_is_better=False) == "not met"

    def metrics(speedup: float) -> dict:
        return {"ssim_psnr": {"frames": 75, "size": "128x128 colour", "skimage_ms_per_frame": 21.5,
                              "speedup": speedup, "talkface_ms_per_frame": 21.5 / speedup}}

    row = rf.ssim_psnr_row(metrics(2.88))
    assert row[-1] == "3x: **not met** (2.88x)" and row[3] == "2.88x"
    assert rf.ssim_psnr_row(metrics(3.6))[-1] == "3x: **met** (3.60x)"
    # the same rule where a file gives both wall and CPU ratios: each gets its own verdict
    cpbd = {"cpbd": {"size": "256x256", "frames": 8, "rounds": 5,
                     "cpbd_package": {"ms_per_frame": 313.0, "cpu_ms_per_frame": 172.0},
                     "matlab": {"ms_per_frame": 9.7, "cpu_ms_per_frame": 6.5, "speedup_vs_package": 32.1,
                                "cpu_speedup_vs_package": 26.4}}}
    assert rf.cpbd_row(cpbd)[-1] == "30x: **met** in wall time, **not met** in CPU time"


def test_check_fails_naming_the_region_when_a_file_changes(tmp_path: Path, capsys) -> None:
    """A copy of the docs and results: change one number in a results file and --check names the region."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("images"))
    shutil.copytree(rf.RESULTS, tmp_path / "benchmarks" / "results")
    index = Path(rf.PRETRAINED_INDEX)
    (tmp_path / index.parent).mkdir(parents=True)
    shutil.copy(ROOT / index, tmp_path / index)
    assert rf.main(["--check"], root=tmp_path) == 0
    capsys.readouterr()

    metrics = tmp_path / "benchmarks" / "results" / "metrics.json"
    data = json.loads(metrics.read_text())
    data["ssim_psnr"]["speedup"] = 2.5
    metrics.write_text(json.dumps(data))
    assert rf.main(["--check"], root=tmp_path) == 1
    out = capsys.readouterr().out
    assert "README.md: region `speed` is stale" in out and "docs/evaluate.md: region `metrics-speed`" in out
    assert "3x: **not met** (2.50x)" in out  # the verdict follows the new number

    assert rf.main([], root=tmp_path) == 0  # rewriting in place makes the check pass again
    assert rf.main(["--check"], root=tmp_path) == 0
    assert "3x: **not met** (2.50x)" in (tmp_path / "README.md").read_text()


def _evaluate_workers(fps1: float, fps2: float, under_load: bool = False) -> dict:
    def case(fps: float) -> dict:
        return {"frames_per_s_median": fps, "frames_per_s_min": fps - 1, "frames_per_s_max": fps + 1}

    return {"workers": {"metrics": ["psnr", "ssim"], "clips": 26, "frames": 1950, "repeats": 3,
                        "workers1": case(fps1), "workers2": case(fps2),
                        "speedup_2_vs_1_workers": round(fps2 / fps1, 2), "speedup_min": 1.0,
                        "speedup_max": 2.0, "target_speedup": 1.7, "target_frames_per_s_2_workers": 150.0,
                        "under_load": under_load, "others_cpu_share": 0.4}}


def test_evaluate_workers_targets_follow_the_file() -> None:
    """Issue 22: 2 workers >= 1.7x one worker and >= 150 frames/s, each verdict from the file's numbers."""
    assert rf.TARGETS["evaluate_workers_speedup"] == 1.7 and rf.TARGETS["evaluate_fps_2_workers"] == 150.0
    row = rf.evaluate_row({}, _evaluate_workers(90.0, 160.0))
    assert row[-1] == "1.7x: **met** (1.78x); 150 frames/s with 2 workers: **met** (160.0)"
    assert "26 prepared GRID s1 clips" in row[0] and "median of 3 fresh processes" in row[0]
    assert "under load" not in row[0]
    row = rf.evaluate_row({}, _evaluate_workers(90.0, 140.0, under_load=True))
    assert row[-1] == "1.7x: **not met** (1.56x); 150 frames/s with 2 workers: **not met** (140.0)"
    assert row[0].endswith("**measured under load**: other processes took 40% of the CPU")
    # an older evaluate.json (no "workers"): the row comes from metrics.json as before, without targets
    old = {"evaluate": {"metrics": ["psnr"], "clips": 5, "speedup_2_vs_1_workers": 0.5,
                        "workers1": {"frames": 375, "frames_per_s": 12.0}, "workers2": {"frames_per_s": 6.0}}}
    assert rf.evaluate_row(old, {"clips": 5})[-1] == ""


def test_a_figure_measured_under_load_says_so() -> None:
    d = {"date": "2026-12-07T08:47:35+00:00", "machine": {"cpu": "AMD EPYC", "cores": 2},
         "load_average_before": [1.0, 2.0, 3.0], "load_average_after": [1.5, 2.5, 3.5]}
    text = rf.provenance("x.json", d)
    assert "under load" not in text
    d.update(under_load=True, others_cpu_share=0.5)
    note = "; **measured under load**: other processes took 50% of the CPU"
    assert rf.provenance("x.json", d) == text + note
    d["under_load"] = False
    assert rf.provenance("x.json", d) == text


def test_timing_helper_gives_median_min_max_and_load() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import timing

    calls = []
    t = timing.measure(lambda: calls.append(1) or len(calls), repeat=3, warmup=1, keep_value=True)
    assert len(calls) == 4 and t.pop("value") == 4
    assert len(t["runs_s"]) == 3 and t["min_s"] <= t["median_s"] <= t["max_s"]
    assert len(t["load_before"]) == 3 and len(t["load_after"]) == 3 and isinstance(t["under_load"], bool)
    order = []
    ts = timing.interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeat=3)
    assert order == ["a", "b", "b", "a", "a", "b"] and set(ts) == {"a", "b"}
    assert len(ts["a"]["runs_s"]) == 3 and len(ts["b"]["load_1min_before_runs"]) == 3
    # the rule: other processes' CPU share when known, else the 1-minute load per core
    assert timing.under_load([0.1, 0, 0], others_cpu_share=0.3) is True
    assert timing.under_load([9.0, 0, 0], others_cpu_share=0.1) is False
    assert timing.under_load([1.5, 0, 0], cores=2) is True
    assert timing.under_load([0.9, 0, 0], cores=2) is False
