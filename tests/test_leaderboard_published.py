"""The packaged published numbers: well-formed, sourced, filtered by dataset, shown but never ranked."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from test_leaderboard_support import write_method

from talkface.leaderboard.load import LeaderboardError, load_results
from talkface.leaderboard.published import COLUMNS, DATASETS, load_published, parse_published
from talkface.leaderboard.render import to_csv, to_html, to_latex, to_markdown
from talkface.leaderboard.table import build_leaderboard


def test_every_published_number_names_its_source() -> None:
    rows = load_published()
    assert rows, "the data file ships with at least the Wav2Lip LRS2 numbers"
    for r in rows:
        assert r.dataset in DATASETS and r.table and r.source_url.startswith("https://")
        assert r.source_kind in ("paper", "secondary") and r.paper and r.venue and r.year > 2000
        assert r.metric and r.variant and r.split
    lrs2 = {(r.method, r.metric): r.value for r in load_published("lrs2")}
    assert lrs2[("Wav2Lip", "LSE-D")] == 6.386 and lrs2[("Wav2Lip + GAN", "LSE-D")] == 6.469
    assert all(r.dataset == "lrs2" for r in load_published("lrs2"))


#: What was read, typed by hand from the text named in each row's ``source_url`` (the Papers with Code
#: page of arXiv 2008.10010, "Unconstrained Lip-synchronization" on LRS2, read again for issue 9):
#: (table, method, dataset, metric) -> value. The paper's own Table 1 could not be read as text (see
#: docs/leaderboard.md), so every row here is secondary; a row added to the data file must be added here
#: by whoever read it, from the text they read.
READ_BY_HAND = {
    ("Table 1", "Wav2Lip", "lrs2", "LSE-D"): 6.386,
    ("Table 1", "Wav2Lip", "lrs2", "FID"): 4.887,
    ("Table 1", "Wav2Lip + GAN", "lrs2", "LSE-D"): 6.469,
    ("Table 1", "Wav2Lip + GAN", "lrs2", "FID"): 4.446,
}
READ_FROM = {"https://www.paperswithcode.com/paper/a-lip-sync-expert-is-all-you-need-for-speech": "secondary"}


def _raw_rows() -> list[dict[str, str]]:
    import talkface

    path = Path(talkface.__file__).parent / "data" / "published_results.csv"
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_every_row_has_a_source_url_and_a_table() -> None:
    rows = _raw_rows()  # the file itself, not parse_published, so a reader change cannot hide a gap
    assert rows
    for r in rows:
        assert r["source_url"].startswith("https://"), r
        assert r["table"].strip().startswith("Table "), r
        assert r["source_kind"] in ("paper", "secondary"), r


def test_values_match_what_was_read_by_hand() -> None:
    rows = _raw_rows()
    in_file = {(r["table"], r["method"], r["dataset"], r["metric"]): float(r["value"]) for r in rows}
    assert len(in_file) == len(rows), "two rows share (table, method, dataset, metric)"
    assert in_file == READ_BY_HAND  # no number in the file that nobody typed in from a text they read
    for r in rows:
        assert READ_FROM.get(r["source_url"]) == r["source_kind"], r
    # LSE-C is not in the file: only a transcription printed one, and the paper's table was not read
    assert not any(r["metric"] == "LSE-C" for r in rows)


def test_data_file_is_package_data() -> None:
    import talkface

    path = Path(talkface.__file__).parent / "data" / "published_results.csv"
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert tuple(header.split(",")) == COLUMNS


def test_parse_rejects_unsourced_or_malformed_rows() -> None:
    good = dict(method="m", paper="p", year="2020", venue="v", dataset="grid", split="s", metric="PSNR",
                variant="v", talkface_metric="psnr", higher_is_better="true", value="27.1", table="Table 2",
                source_url="https://example.org", source_kind="paper", note="")

    def text(**change) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS)
        w.writeheader()
        w.writerow({**good, **change})
        return buf.getvalue()

    assert parse_published(text())[0].higher_is_better is True
    for change, msg in (({"table": ""}, "table and source"), ({"source_url": ""}, "table and source"),
                        ({"dataset": "lrw"}, "dataset"), ({"value": "nan"}, "finite"),
                        ({"value": "x"}, "line 2"), ({"source_kind": "memory"}, "source_kind")):
        with pytest.raises(LeaderboardError, match=msg):
            parse_published(text(**change))
    with pytest.raises(LeaderboardError, match="missing column"):
        parse_published("method,value\nm,1\n")
    with pytest.raises(LeaderboardError, match="choose one of"):
        load_published("lrw")


def test_published_rows_are_cited_not_ranked(tmp_path: Path) -> None:
    write_method(tmp_path, "ours", {"psnr": (30.0, 1.0)})
    write_method(tmp_path, "static-frame", {"psnr": (27.0, 1.0)})
    board = build_leaderboard(load_results([tmp_path]), published=load_published("lrs2"),
                              published_dataset="lrs2")
    assert [r.method for r in board.rows] == ["ours", "static-frame"]  # published rows are not table rows
    assert board.columns[0].ranking == ["ours", "static-frame"]
    md = to_markdown(board)
    assert "cited, not measured here; never ranked" in md and "| Wav2Lip |" in md
    assert "not checked against the paper itself" in md
    assert "never ranked against measured rows" in to_latex(board)
    assert "never ranked against the measured rows" in to_html(board)
    cited = [r for r in csv.DictReader(io.StringIO(to_csv(board))) if r["kind"] == "cited"]
    assert {r["method"] for r in cited} == {"Wav2Lip", "Wav2Lip + GAN"}
    assert all(r["rank"] == "" and r["mark"] == "" and r["source_url"] for r in cited)


def test_dataset_without_published_numbers_says_so(tmp_path: Path) -> None:
    write_method(tmp_path, "ours", {"psnr": (30.0, 1.0)})
    board = build_leaderboard(load_results([tmp_path]), published=load_published("tcd-timit"),
                              published_dataset="tcd-timit")
    assert "No published number for tcd-timit" in to_markdown(board)
