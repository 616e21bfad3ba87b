"""Follow-ups of issue 21, each through the command a user runs: ``prepare --out`` into a folder with a
damaged file is one ``error:`` line naming it (the dataset reader's sentence), ``inspect`` refuses a
user's mistake with one ``error:`` line and exit 2, and ``evaluate --part`` on a part with no clips says
which parts hold clips and which ``--part`` to pass, as every other command does.

One real GRID clip is prepared once (a few seconds); every refused ``prepare`` stops before any clip
work, and the evaluate and inspect cases use a hand-made dataset of flat 32-pixel clips.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_damaged_files import HOW, damage, one_error
from test_names import tiny_dataset
from typer.testing import CliRunner

from talkface.cli import app

CLIP = "s1_bbaf2n"
PROTOCOL = "speaker-independent"  # GRID's first protocol: what a plain `prepare grid` writes


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "120"})


def _prepare(grid_root: Path, out: Path):
    return run("prepare", "grid", str(grid_root), "--speakers", "s1", "--limit", "1", "--out", str(out))


@pytest.fixture(scope="module")
def prepared_one(grid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder ``prepare grid --limit 1`` made: one real clip, its info, rows and protocol file."""
    out = tmp_path_factory.mktemp("issue21") / "d"
    result = _prepare(grid_root, out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "splits" / f"{PROTOCOL}.json").read_text()) == {CLIP: "test"}
    return out


# -- 1. prepare into a folder with a damaged file --------------------------------------------------


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("file", ["talkface_dataset.json", f"splits/{PROTOCOL}.json", f"rows/{CLIP}.json"])
def test_prepare_into_a_damaged_folder_is_one_line(grid_root: Path, prepared_one: Path, tmp_path: Path,
                                                   file: str, how: str) -> None:
    data = Path(shutil.copytree(prepared_one, tmp_path / "d"))
    path = damage(data / file, how)
    broken = path.read_bytes()
    line = one_error(_prepare(grid_root, data), path)
    assert line.startswith(f"error: {path} is damaged (")
    assert ("empty (0 bytes)" in line) == (how == "empty")
    todo = {
        "talkface_dataset.json": "restore it from a copy, or prepare the corpus again into a new folder",
        f"splits/{PROTOCOL}.json": f"delete it and run `talkface prepare <corpus> <corpus folder> --protocol "
                                   f"{PROTOCOL} --out {data}`",
        f"rows/{CLIP}.json": f"delete it and run the same `talkface prepare ... --out {data}` again",
    }[file]
    assert todo in line
    assert path.read_bytes() == broken  # refused, not written over
    if file == "talkface_dataset.json":  # the writer's sentence is the reader's, word for word
        from talkface.store.dataset import Dataset, DatasetError

        with pytest.raises(DatasetError) as err:
            Dataset.open(data)
        assert line == f"error: {err.value}"


def test_the_advice_for_a_damaged_protocol_file_works(grid_root: Path, prepared_one: Path,
                                                      tmp_path: Path) -> None:
    data = Path(shutil.copytree(prepared_one, tmp_path / "d"))
    path = damage(data / "splits" / f"{PROTOCOL}.json", "empty")
    one_error(_prepare(grid_root, data), path)
    path.unlink()
    again = _prepare(grid_root, data)
    assert again.exit_code == 0, again.output
    assert json.loads(path.read_text()) == {CLIP: "test"}
    assert "all 1 clips were already finished" in again.output  # no clip redone


def test_the_writer_raises_the_readers_error_type(tmp_path: Path) -> None:
    from talkface.store.dataset import DatasetError
    from talkface.store.dataset_writer import DamagedDataset, DatasetStore, SettingsMismatch

    store = DatasetStore(tmp_path)
    store.claim({"corpus": "synthetic"})
    store.add_protocol("alpha", {"c1": "test"})
    (tmp_path / "splits" / "alpha.json").write_text("[1, 2]")
    with pytest.raises(DamagedDataset) as err:
        store.protocol_parts("alpha")
    assert isinstance(err.value, DatasetError) and isinstance(err.value, SettingsMismatch)
    assert "is damaged (not a clip -> part mapping)" in str(err.value)
    store.info_path.write_text('"just a string"')
    with pytest.raises(DamagedDataset, match="is damaged \\(not a dataset description\\)"):
        store.read_settings()


# -- 2. inspect ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-made dataset (no source videos) with one clip that failed to prepare."""
    from talkface.store.dataset_writer import DatasetStore

    data = tiny_dataset(tmp_path_factory.mktemp("issue21_tiny") / "data", {"c1": "train", "c2": "train"})
    store = DatasetStore(data)
    store.write_row({"clip_id": "c3", "corpus": "synthetic", "speaker": "p1", "status": "failed",
                     "error": "no face on 3 of 75 frames\nTraceback (most recent call last): ...",
                     "n_frames": 0, "flags": ""})
    store.write_manifest()
    return data


def test_inspect_refuses_a_users_mistake_in_one_line(tiny: Path, prepared_one: Path, tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    cases = [
        (["nope", "--data", str(tmp_path)], str(tmp_path), "is not a prepared dataset"),
        (["nope", "--data", str(tiny)], "'nope'", f"is not in {tiny / 'manifest.parquet'}"),
        (["c3", "--data", str(tiny)], "c3", "failed to prepare (no face on 3 of 75 frames), so it has no"),
        (["c1", "--data", str(tiny)], "c1", "the source video of clip c1, None, is not there"),
        ([CLIP, "--data", str(prepared_one), "--frame", "75"], CLIP, "--frame 75 is outside clip"),
        ([CLIP, "--data", str(prepared_one), "--out", str(tmp_path)], str(tmp_path), "is a folder"),
    ]
    for args, named, words in cases:
        result = run("inspect", *(args if "--out" in args else [*args, "--out", str(png)]))
        line = one_error(result, named)
        assert words in line, line
        assert "Traceback" not in line
    assert not png.exists()
    drawn = run("inspect", CLIP, "--data", str(prepared_one), "--frame", "74", "--out", str(png))
    assert drawn.exit_code == 0, drawn.output
    assert png.stat().st_size > 0


# -- 3. evaluate --part with no clips in that part ---------------------------------------------------


def test_evaluate_a_part_with_no_clips_says_which_parts_hold_clips(tiny: Path, tmp_path: Path) -> None:
    from talkface.store.dataset import Dataset, DatasetError

    generated = tmp_path / "generated"
    generated.mkdir()
    for cid in ("c1", "c2"):
        shutil.copy(tiny / "crops" / f"{cid}.mp4", generated / f"{cid}.mp4")
    result = run("evaluate", "--generated", str(generated), "--data", str(tiny), "--part", "test",
                 "--metrics", "psnr", "--method", "m", "--out", str(tmp_path / "res"))
    line = one_error(result, tiny)
    assert "protocol 'alpha' has no usable 'test' clips (it holds: train 2): pass `--part train`" in line
    with pytest.raises(DatasetError) as err:  # the sentence generate, baselines and training give
        Dataset.open(tiny).parts("alpha").require("test")
    assert line == f"error: {err.value}"
    assert not (tmp_path / "res").exists()
