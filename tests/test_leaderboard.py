"""`talkface leaderboard build`: golden tables in every format, ranking rules, the protocol guard.

Golden files live in tests/golden/leaderboard/; after an intended change of the output, regenerate
them with ``TALKFACE_UPDATE_GOLDEN=1 pytest tests/test_leaderboard.py`` and review the diff.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from test_leaderboard_support import (
    CLIPS,
    OFFSETS,
    PROTOCOL,
    XSS,
    definition,
    write_golden,
    write_method,
)
from typer.testing import CliRunner

from talkface.cli import app
from talkface.leaderboard.load import LeaderboardError, load_results
from talkface.leaderboard.protocol import ProtocolMismatch
from talkface.leaderboard.published import load_published
from talkface.leaderboard.render import render, to_csv, to_latex, to_markdown
from talkface.leaderboard.table import REAL_ROW, build_leaderboard

GOLDEN = Path(__file__).parent / "golden" / "leaderboard"
UPDATE = os.environ.get("TALKFACE_UPDATE_GOLDEN", "") not in ("", "0")


@pytest.fixture(scope="module")
def golden_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_golden(tmp_path_factory.mktemp("leaderboard") / "results")


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"golden file {path} missing: run with TALKFACE_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file (TALKFACE_UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize(("fmt", "name"), [("md", "board.md"), ("latex", "board.tex"), ("csv", "board.csv"),
                                           ("html", "board.html")])
def test_golden_formats(golden_results: Path, fmt: str, name: str) -> None:
    board = build_leaderboard(load_results([golden_results]))
    _check_golden(name, render(board, fmt))


def test_golden_mean_only_with_published(golden_results: Path) -> None:
    board = build_leaderboard(load_results([golden_results]), mean_only=True,
                              published=load_published("lrs2"), published_dataset="lrs2")
    _check_golden("board_mean_only_lrs2.md", to_markdown(board))
    _check_golden("board_mean_only_lrs2.tex", to_latex(board))


def test_best_honours_direction_and_closer_to_real(golden_results: Path) -> None:
    board = build_leaderboard(load_results([golden_results]))
    cols = {c.metric: c for c in board.columns}
    # lower is better: the smallest LMD wins; higher is better: the largest PSNR wins
    assert cols["lmd_mouth"].direction == "lower" and cols["lmd_mouth"].winner == "ours"
    assert cols["lmd_mouth"].second == "mean-face"
    assert cols["psnr"].direction == "higher" and cols["psnr"].winner == "ours"
    # the unranked ground truth has the best PSNR and LMD but is never marked
    gt = board.row("ground-truth")
    assert gt.kind == "unranked" and all(c.mark == "" for c in gt.cells.values())
    assert gt.cells[cols["psnr"].key].mean > board.row("ours").cells[cols["psnr"].key].mean
    # closer to real: the real mean blink duration is 0.2 s; 0.22 (ours) beats 0.30 (XSS) and 0.40
    dur = cols["blink_duration"]
    assert dur.direction == "closer" and dur.target == pytest.approx(0.2)
    assert dur.winner == "ours" and dur.second == XSS
    # the highest blink rate is not the best one: XSS blinks 60/min, the real data 20/min
    assert cols["blink_rate"].ranking[-1] == "static-frame" or cols["blink_rate"].ranking[0] != XSS
    assert cols["blink_rate"].ranking[0] == "ours"
    real = board.row(REAL_ROW)
    assert real.kind == "real" and set(real.cells) == {cols["blink_rate"].key, dur.key}
    # rendered: bold for the best, italics/underline for the second, in the right rows
    md = to_markdown(board).splitlines()
    ours_line = next(line for line in md if line.startswith("| ours |"))
    assert "**1.30 ± 0.08**" in ours_line
    assert "*2.00 ± 0.08*" in next(line for line in md if line.startswith("| mean-face |"))
    tex = to_latex(board)
    assert r"ours & $\mathbf{1.30 \pm 0.08}$" in tex
    assert r"mean-face & $\underline{2.00 \pm 0.08}$" in tex


def test_direction_from_metric_class_when_definition_lacks_it(tmp_path: Path) -> None:
    d = definition("psnr")
    del d["higher_is_better"]
    for name, mean in (("a", 30.0), ("b", 20.0)):
        write_method(tmp_path, name, {"psnr": (mean, 0.5)}, definitions={"psnr": d})
    board = build_leaderboard(load_results([tmp_path]))
    assert board.columns[0].direction == "higher" and board.columns[0].winner == "a"


def test_overlapping_intervals_mark_no_winner(golden_results: Path) -> None:
    board = build_leaderboard(load_results([golden_results]))
    ssim = next(c for c in board.columns if c.metric == "ssim")
    assert ssim.ranking[:2] == ["ours", "mean-face"]  # 0.871 vs 0.868: inside each other's intervals
    assert ssim.winner is None and "overlap" in (ssim.no_winner or "")
    assert all(r.cells[ssim.key].mark == "" for r in board.rows if ssim.key in r.cells)
    header = to_markdown(board).splitlines()[2]
    assert "SSIM ↑ ≈" in header
    ssim_cells = [line.split(" & ")[3] for line in to_latex(board).splitlines() if line.count(" & ") >= 5]
    assert not any("mathbf" in c or "underline" in c for c in ssim_cells)
    assert "no winner" in to_markdown(board)


def test_exact_tie_marks_no_winner(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_method(tmp_path, name, {"psnr": (30.0, 1.0)})
    col = build_leaderboard(load_results([tmp_path])).columns[0]
    assert col.winner is None and col.no_winner


def test_paired_test_is_wilcoxon_of_the_best_two(golden_results: Path) -> None:
    board = build_leaderboard(load_results([golden_results]))
    lmd = next(c for c in board.columns if c.metric == "lmd_mouth")
    assert lmd.test_pair == ("ours", "mean-face")
    ours = np.array([1.3 + 0.2 * o for o in OFFSETS])
    mean_face = np.array([2.0 + 0.2 * o for o in OFFSETS])
    expected = scipy.stats.wilcoxon(ours, mean_face)
    assert lmd.test.p_value == pytest.approx(expected.pvalue)
    rows = list(csv.DictReader(io.StringIO(to_csv(board))))
    ours_lmd = next(r for r in rows if r["method"] == "ours" and r["metric"] == "lmd_mouth")
    assert ours_lmd["paired_with"] == "mean-face" and ours_lmd["paired_test"].startswith("wilcoxon")
    assert float(ours_lmd["test_p_value"]) == pytest.approx(expected.pvalue)
    assert ours_lmd["mark"] == "best" and ours_lmd["rank"] == "1"
    boot = build_leaderboard(load_results([golden_results]), test="bootstrap")
    lmd_b = next(c for c in boot.columns if c.metric == "lmd_mouth")
    assert lmd_b.test.test == "bootstrap" and lmd_b.test.statistic == pytest.approx(-0.7)
    assert lmd_b.test.p_value < 0.01 and lmd_b.test.diff_high < 0


def test_csv_has_exact_bounds_and_counts(golden_results: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(build_leaderboard(load_results([golden_results]))))))
    mf = next(r for r in rows if r["method"] == "mean-face" and r["metric"] == "psnr")
    assert mf["n_clips"] == "8" and mf["n_failed"] == "2" and mf["unit"] == "dB"
    assert float(mf["ci_low"]) < float(mf["mean"]) < float(mf["ci_high"])
    assert {r["kind"] for r in rows} == {"unranked", "real", "measured"}


# -- the protocol guard -------------------------------------------------------------------------


def test_guard_refuses_a_different_part(tmp_path: Path) -> None:
    write_method(tmp_path / "a", "ours", {"psnr": (30.0, 1.0)})
    write_method(tmp_path / "b", "static-frame", {"psnr": (27.0, 1.0)}, protocol={**PROTOCOL, "part": "val"})
    methods = load_results([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ProtocolMismatch) as err:
        build_leaderboard(methods)
    msg = str(err.value)
    assert "part differs: test (ours); val (static-frame)" in msg and "--allow-mixed" in msg
    board = build_leaderboard(methods, allow_mixed=True)
    assert any(n.startswith("Mixed protocols (--allow-mixed): part differs") for n in board.notes)
    assert "part: mixed" in board.caption
    assert "Mixed protocols" in to_markdown(board)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"dataset": "tcd-timit"}, "dataset"), ({"protocol": "speaker-independent"}, "split protocol"),
     ({"crop_size": 256}, "crop size"), ({"reference_id": "fedcba9876543210"}, "reference set")],
)
def test_guard_names_each_protocol_field(tmp_path: Path, change: dict, field: str) -> None:
    write_method(tmp_path, "a", {"psnr": (30.0, 1.0)})
    write_method(tmp_path, "b", {"psnr": (27.0, 1.0)}, protocol={**PROTOCOL, **change})
    with pytest.raises(ProtocolMismatch, match=f"{field} differs"):
        build_leaderboard(load_results([tmp_path]))


def test_reference_path_alone_is_not_a_difference(tmp_path: Path) -> None:
    write_method(tmp_path, "a", {"psnr": (30.0, 1.0)})
    write_method(tmp_path, "b", {"psnr": (27.0, 1.0)}, protocol={**PROTOCOL, "reference": "/elsewhere"})
    assert build_leaderboard(load_results([tmp_path])).columns[0].winner == "a"


def test_guard_refuses_a_different_metric_definition(tmp_path: Path) -> None:
    write_method(tmp_path, "a", {"lmd_mouth": (1.0, 0.1)})
    other = definition("lmd_mouth", detector={"name": "fan"})
    write_method(tmp_path, "b", {"lmd_mouth": (2.0, 0.1)}, definitions={"lmd_mouth": other})
    with pytest.raises(ProtocolMismatch, match="lmd_mouth:centroid-mean detector differs"):
        build_leaderboard(load_results([tmp_path]))


def test_unknown_protocol_is_said_and_mixing_it_refused(tmp_path: Path) -> None:
    write_method(tmp_path / "old", "a", {"psnr": (30.0, 1.0)}, record_protocol=False)
    write_method(tmp_path / "old", "b", {"psnr": (27.0, 1.0)}, record_protocol=False)
    board = build_leaderboard(load_results([tmp_path / "old"]))
    assert any("Protocol unknown for a, b" in n and "older results" in n for n in board.notes)
    assert "dataset: unknown" in board.caption
    write_method(tmp_path / "new", "c", {"psnr": (29.0, 1.0)})
    with pytest.raises(ProtocolMismatch, match=r"dataset differs: grid \(c\); unknown \(a, b\)"):
        build_leaderboard(load_results([tmp_path / "old", tmp_path / "new"]))


def test_variants_are_separate_columns(tmp_path: Path) -> None:
    write_method(tmp_path, "a", {"psnr": (30.0, 1.0)})
    gray = definition("psnr", variant="gray-range255-cap100")
    write_method(tmp_path, "b", {"psnr": (27.0, 1.0)}, definitions={"psnr": gray})
    board = build_leaderboard(load_results([tmp_path]))
    assert [c.variant for c in board.columns] == ["colour-range255-cap100", "gray-range255-cap100"]
    assert any("psnr appears in 2 variants" in n for n in board.notes)
    assert "PSNR/gray-range255-cap100 (dB) ↑" in to_markdown(board)


def test_metrics_filter_and_unknown_metric(golden_results: Path) -> None:
    methods = load_results([golden_results])
    board = build_leaderboard(methods, metrics="psnr,lmd_mouth:centroid-mean")
    assert [c.metric for c in board.columns] == ["psnr", "lmd_mouth"]
    with pytest.raises(LeaderboardError, match="no such column"):
        build_leaderboard(methods, metrics="lpips")


def test_static_frame_check(golden_results: Path) -> None:
    notes = build_leaderboard(load_results([golden_results])).notes
    assert "mean-face does not beat static-frame (worse, or 95% intervals overlap) on: psnr." in notes
    assert not any(n.startswith("ours does not beat") for n in notes)


def test_same_method_in_two_folders_is_an_error(tmp_path: Path) -> None:
    write_method(tmp_path / "a", "ours", {"psnr": (30.0, 1.0)})
    write_method(tmp_path / "b", "ours", {"psnr": (30.0, 1.0)})
    with pytest.raises(LeaderboardError, match="'ours' is in both"):
        load_results([tmp_path / "a", tmp_path / "b"])


def test_missing_results_folder(tmp_path: Path) -> None:
    with pytest.raises(LeaderboardError, match="no results"):
        load_results([tmp_path / "nothing"])


def test_escaping_in_text_formats(golden_results: Path) -> None:
    board = build_leaderboard(load_results([golden_results]))
    assert XSS not in to_markdown(board) and "&lt;img src=x onerror=alert(1)&gt;" in to_markdown(board)
    assert r"\textless{}img src=x onerror=alert(1)\textgreater{}" in to_latex(board)
    assert XSS not in render(board, "html")
    assert any(r["method"] == XSS for r in csv.DictReader(io.StringIO(to_csv(board))))


def test_latex_escapes_specials(tmp_path: Path) -> None:
    write_method(tmp_path, "a_b & c%$#{}~^\\", {"psnr": (30.0, 1.0)})
    tex = to_latex(build_leaderboard(load_results([tmp_path])))
    assert r"a\_b \& c\%\$\#\{\}\textasciitilde{}\textasciicircum{}\textbackslash{}" in tex


def test_single_clip_has_no_interval(tmp_path: Path) -> None:
    from talkface.store.results import ResultRow, ResultsStore

    for name, v in (("a", 30.0), ("b", 20.0)):
        row = ResultRow(name, CLIPS[0], "psnr", "colour-range255-cap100", v, definition=definition("psnr"))
        ResultsStore(tmp_path).replace_method(name, [row], {"protocol": PROTOCOL})
    board = build_leaderboard(load_results([tmp_path]))
    col = board.columns[0]
    assert col.winner is None and "interval" in col.no_winner
    assert math.isnan(board.row("a").cells[col.key].low)
    assert "| a | 30.00 |" in to_markdown(board)


# -- the command ----------------------------------------------------------------------------------


def test_cli_prints_markdown_and_writes_files(golden_results: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["leaderboard", "build", str(golden_results)])
    assert res.exit_code == 0, res.output
    assert res.output == to_markdown(build_leaderboard(load_results([golden_results])))
    res = runner.invoke(app, ["leaderboard", "build", str(golden_results), "--out", str(tmp_path / "t.tex")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t.tex").read_text().startswith("% talkface leaderboard")
    res = runner.invoke(app, ["leaderboard", "build", str(golden_results), "--format", "all",
                              "--include-published", "lrs2", "--out", str(tmp_path / "board")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "board").iterdir()) == [
        "leaderboard.csv", "leaderboard.html", "leaderboard.md", "leaderboard.tex"]
    assert "Wav2Lip" in (tmp_path / "board" / "leaderboard.html").read_text()
    res = runner.invoke(app, ["leaderboard", "build", str(golden_results), "--mean-only",
                              "--metrics", "psnr"])
    assert res.exit_code == 0 and "± " not in res.output.split("\n\n")[1]


def test_cli_refuses_mixed_protocols_with_the_difference(tmp_path: Path) -> None:
    write_method(tmp_path / "a", "ours", {"psnr": (30.0, 1.0)})
    write_method(tmp_path / "b", "other", {"psnr": (27.0, 1.0)}, protocol={**PROTOCOL, "crop_size": 256})
    runner = CliRunner()
    res = runner.invoke(app, ["leaderboard", "build", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 2
    assert "crop size differs: 128x128 (ours); 256x256 (other)" in res.output
    res = runner.invoke(app, ["leaderboard", "build", str(tmp_path / "a"), str(tmp_path / "b"),
                              "--allow-mixed"])
    assert res.exit_code == 0 and "Mixed protocols" in res.output


def test_cli_help_teaches() -> None:
    res = CliRunner().invoke(app, ["leaderboard", "build", "--help"])
    assert res.exit_code == 0
    for word in ("--allow-mixed", "--include-published", "--mean-only", "--metrics", "--format"):
        assert word in res.output


def test_reference_set_difference_names_the_missing_clips(tmp_path: Path) -> None:
    from talkface.store.results import ResultRow, ResultsStore

    write_method(tmp_path, "a", {"psnr": (30.0, 1.0)})
    rows = [ResultRow("b", c, "psnr", "colour-range255-cap100", 27.0, definition=definition("psnr"))
            for c in CLIPS[:-2]]
    ResultsStore(tmp_path).replace_method("b", rows, {"protocol": {**PROTOCOL, "reference_id": "ffff"}})
    with pytest.raises(ProtocolMismatch, match=r"scored clips differ: b lacks s1_clip08, s1_clip09"):
        build_leaderboard(load_results([tmp_path]))


def test_recorded_none_part_is_not_unknown(tmp_path: Path) -> None:
    write_method(tmp_path, "a", {"psnr": (30.0, 1.0)}, protocol={**PROTOCOL, "part": None})
    board = build_leaderboard(load_results([tmp_path]))
    assert "part: several parts" in board.caption and not board.notes
