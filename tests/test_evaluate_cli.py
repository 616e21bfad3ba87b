"""``talkface evaluate`` as a user runs it: flags, one-line errors, and the printed summary table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from talkface.cli import app
from talkface.store.dataset import Dataset
from talkface.store.results import ResultsStore

WIDE = {"COLUMNS": "220"}


@pytest.fixture(scope="module")
def generated(prepared_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Byte-identical copies of two usable reference crops."""
    ds = Dataset.open(prepared_grid)
    folder = tmp_path_factory.mktemp("generated")
    for r in ds.records(usable_only=True)[:2]:
        shutil.copy(ds.crop_path(r.clip_id), folder / f"{r.clip_id}.mp4")
    return folder


def _run(*args: str):
    return CliRunner().invoke(app, ["evaluate", *args], env=WIDE)


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--arcface-model"], "identity_arcface (asked for with --arcface-model) cannot run: "),
        (["--lpips-weights"], "lpips (asked for with --lpips-weights) also needs --lpips-backbone"),
        (["--lpips-weights", "--lpips-backbone"], "lpips (asked for with --lpips-backbone, --lpips-weights)"),
        (["--syncnet-model"], "lse_c (asked for with --syncnet-model) cannot run: "),
    ],
)
def test_a_garbage_model_file_the_user_named_is_an_error(
    generated: Path, prepared_grid: Path, tmp_path: Path, flags: list[str], says: str
) -> None:
    garbage = tmp_path / "model.bin"
    garbage.write_bytes(b"\x00garbage, not a model")
    args = ["--generated", str(generated), "--data", str(prepared_grid), "--method", "m",
            "--out", str(tmp_path / "res")]
    for flag in flags:
        args += [flag, str(garbage)]
    line = _one_error_line(_run(*args))
    assert line.startswith(f"error: {says}"), line
    assert not (tmp_path / "res" / "results.parquet").exists()


def test_default_run_says_once_what_did_not_run_and_prints_the_table(
    generated: Path, prepared_grid: Path, tmp_path: Path
) -> None:
    out = tmp_path / "res"
    result = _run("--generated", str(generated), "--data", str(prepared_grid), "--method", "copy",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "skipping" not in result.output
    not_run = [line for line in result.output.splitlines() if "not run" in line]
    assert len(not_run) == 1, result.output
    for name in ("identity_arcface", "lpips", "lse_c", "lse_d", "--syncnet-model", "--arcface-model"):
        assert name in not_run[0]
    # the summary table: one row per metric with its direction, mean and 95% interval per method
    table = result.stdout
    assert "psnr:colour-range255-cap100" in table and "100 [100, 100]" in table
    assert "lmd_mouth:centroid-mean" in table and "↓" in table and "↑" in table
    assert "blink_rate" in table and "≈ real" in table
    assert "copy: 2 clips" in table and "grid" in table
    s = ResultsStore(out).metric_summaries("copy")
    assert "identity_dlib:" + s[next(k for k in s if k.startswith("identity_dlib"))].variant in table


def test_table_shows_methods_of_the_same_protocol_only(
    generated: Path, prepared_grid: Path, tmp_path: Path
) -> None:
    out = tmp_path / "res"
    one = next(generated.iterdir())
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(one, single)
    base = ["--data", str(prepared_grid), "--out", str(out), "--metrics", "psnr"]
    assert _run("--generated", str(generated), "--method", "a", *base).exit_code == 0
    assert _run("--generated", str(single), "--method", "fewer", *base).exit_code == 0
    result = _run("--generated", str(generated), "--method", "b", *base)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "metric" in line)
    assert " a " in header + " " and " b " in header + " " and "fewer" not in header
    assert "not shown (another protocol or none recorded): fewer" in result.stdout


def test_reference_is_a_deprecated_spelling_of_data(
    generated: Path, prepared_grid: Path, tmp_path: Path
) -> None:
    result = _run("--generated", str(generated), "--reference", str(prepared_grid), "--method", "m",
                  "--out", str(tmp_path / "res"), "--metrics", "psnr")
    assert result.exit_code == 0, result.output
    assert "--reference is deprecated; use --data" in result.output
    line = _one_error_line(_run("--generated", str(generated), "--reference", str(prepared_grid),
                                "--data", str(tmp_path), "--method", "m", "--metrics", "psnr"))
    assert "disagree" in line
    line = _one_error_line(_run("--generated", str(generated), "--method", "m"))
    assert "missing option --data" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--metrics", "nope"], "unknown metric 'nope'; known: "),
        (["--metrics", "psnr:nope"], "metric 'psnr' has no variant 'nope'"),
        (["--part", "dev"], "a part is one of train, val, test"),
        (["--protocol", "nope"], "holds no split protocol 'nope' (it holds: "),
    ],
)
def test_user_errors_are_one_line(
    generated: Path, prepared_grid: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    line = _one_error_line(_run("--generated", str(generated), "--data", str(prepared_grid), "--method",
                                "m", "--out", str(tmp_path / "res"), *args))
    assert says in line, line


def test_not_a_dataset_is_one_line(generated: Path, tmp_path: Path) -> None:
    line = _one_error_line(_run("--generated", str(generated), "--data", str(tmp_path), "--method", "m"))
    assert "is not a prepared dataset" in line


def test_trim_is_reported_under_the_table(prepared_grid: Path, tmp_path: Path) -> None:
    from talkface.core.media import read_audio, read_video, write_video

    ds = Dataset.open(prepared_grid)
    cid = ds.usable_ids()[0]
    gen = tmp_path / "gen"
    gen.mkdir()
    write_video(gen / f"{cid}.mp4", read_video(ds.crop_path(cid))[:50], 25.0, read_audio(ds.crop_path(cid)))
    base = ["--generated", str(gen), "--data", str(prepared_grid), "--out", str(tmp_path / "r"),
            "--metrics", "psnr"]
    strict = _run(*base, "--method", "strict")
    assert strict.exit_code == 0, strict.output
    assert "1 clip(s) differ from their reference by more than 1 frame" in strict.output
    assert f"{cid} (50 vs 75)" in strict.output and "(1 failed)" in strict.stdout
    trimmed = _run(*base, "--method", "trimmed", "--trim")
    assert trimmed.exit_code == 0, trimmed.output
    assert "1 trimmed to their reference's length (at most 25 frames, 25 in total)" in trimmed.stdout


def test_the_summary_fits_an_80_column_terminal_with_every_number_whole(tmp_path: Path) -> None:
    """Six methods (one with a wide, non-ASCII name) and long metric names: every line fits 80
    columns, and each mean and interval appears whole on one line (numbers are never folded)."""
    import io

    from rich.cells import cell_len
    from rich.console import Console

    from talkface.evaluate.cli import print_summary
    from talkface.store.results import Protocol, ResultRow

    protocol = Protocol("grid", "seen", "test", 128, "/d", "0123456789abcdef").to_dict()
    metrics = {("psnr", "colour-range255-cap100"): True, ("ssim", "gaussian11-colour-range255"): True,
               ("lmd_mouth", "centroid-mean"): False, ("identity_dlib", "resnet-cosine-distance"): False}
    methods = ["ours", "ground-truth", "static-frame", "mean-face", "oracle-landmarks", "ours é/中文"]
    values = {m: 20.0 + i + 0.25 for i, m in enumerate(methods)}  # every clip alike: interval [v, v]
    store = ResultsStore(tmp_path / "res")
    for m in methods:
        rows = [ResultRow(m, f"c{c}", metric, variant, value=values[m] * (1 if hib else 0.01),
                          definition={"higher_is_better": hib})
                for (metric, variant), hib in metrics.items() for c in range(3)]
        store.replace_method(m, rows, {"protocol": protocol, "pairing": {"n_matched": 3}})
    buffer = io.StringIO()
    print_summary(store.root, "ours", Console(width=80, file=buffer, color_system=None))
    text = buffer.getvalue()
    assert max(cell_len(line) for line in text.splitlines()) <= 80, text
    lines = text.splitlines()
    expected = {"ours": ("20.25", "0.2025"), "ground-truth": ("21.25", "0.2125"),
                "static-frame": ("22.25", "0.2225"), "mean-face": ("23.25", "0.2325"),
                "oracle-landmarks": ("24.25", "0.2425"), "ours é/中文": ("25.25", "0.2525")}
    for name, (high, low) in expected.items():
        for number in (high, low):
            assert any(number in line.split() for line in lines), (name, number, text)
            assert any(f"[{number}, {number}]" in line for line in lines), (name, number, text)
        assert any(name in line for line in lines), (name, text)  # each method's header, whole
    for metric in ("psnr:", "colour-range255-cap100", "identity_dlib:", "resnet-cosine-distance"):
        assert any(metric in line for line in lines), (metric, text)
    assert "ours: 3 clips" in text
