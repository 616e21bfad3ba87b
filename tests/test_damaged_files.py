"""A damaged project file (truncated, or 0 bytes) is one ``error:`` line naming the file and saying what
to do, exit 2, never a reader's traceback: the dataset, the results, the generation record, the study
key and its responses, each read through the command a user runs.

Every folder here is made in a second or two (a hand-made dataset of flat 32-pixel clips, PSNR only,
the tiny study sources), so the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_names import tiny_dataset
from typer.testing import CliRunner

from talkface.cli import app

HOW = ("truncated", "empty")


def damage(path: Path, how: str) -> Path:
    """Cut ``path`` to half its bytes, or to none."""
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    return path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error(result, path: Path) -> str:
    """The one ``error:`` line of a refused command, which names ``path``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert str(path) in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dataset, generated videos (copies of its crops) and a results folder of method ``a``."""
    root = tmp_path_factory.mktemp("damaged")
    data = tiny_dataset(root / "data", {"c1": "test", "c2": "test"})
    generated = root / "generated"
    generated.mkdir()
    for cid in ("c1", "c2"):
        shutil.copy(data / "crops" / f"{cid}.mp4", generated / f"{cid}.mp4")
    results = root / "results"
    made = _evaluate(data, generated, "a", results)
    assert made.exit_code == 0, made.output
    return {"data": data, "generated": generated, "results": results}


def _evaluate(data: Path, generated: Path, method: str, out: Path):
    return run("evaluate", "--generated", str(generated), "--data", str(data), "--metrics", "psnr",
               "--method", method, "--out", str(out))


def _copy(base: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base[name], tmp_path / name))


# -- the dataset --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("file", ["talkface_dataset.json", "manifest.parquet", "rows/c1.json",
                                  "splits/alpha.json"])
def test_a_damaged_dataset_file_is_one_line(base, tmp_path: Path, file: str, how: str) -> None:
    data = _copy(base, "data", tmp_path)
    if file.startswith(("rows/", "splits/")):
        (data / "manifest.parquet").unlink()  # read when a run stopped before the manifest was rebuilt
    path = damage(data / file, how)
    line = one_error(_evaluate(data, base["generated"], "m", tmp_path / "res"), path)
    assert "is damaged" in line and ("empty (0 bytes)" in line) == (how == "empty")
    todo = {"talkface_dataset.json": "prepare the corpus again into a new folder",
            "manifest.parquet": "it rebuilds the manifest from rows/",
            "rows/c1.json": "to redo the clip",
            "splits/alpha.json": "--protocol alpha"}[file]
    assert todo in line
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_clip_file_names_itself(base, tmp_path: Path, how: str) -> None:
    from talkface.store.dataset import Dataset, DatasetError

    data = tiny_dataset(tmp_path / "data", {"c1": "test", "c2": "train"})
    path = damage(data / "clips" / "c1.npz", how)
    with pytest.raises(DatasetError) as err:
        Dataset.open(data).load_clip("c1")
    message = str(err.value)
    assert message.startswith(f"{path} is damaged (") and "\n" not in message
    row = data / "rows" / "c1.json"
    assert f"delete {row} and run the same `talkface prepare ... --out {data}`" in message
    # generate and every baseline record a clip that fails and go on: the record says why, in one line
    result = run("baseline", "static-frame", "--data", str(data), "--part", "test", "--identity-from",
                 "same-clip", "--out", str(tmp_path / "out"))
    assert "Traceback" not in result.output, result.output
    failed = json.loads((tmp_path / "out" / "generation.json").read_text())["failed"]
    assert list(failed) == ["c1"] and str(path) in failed["c1"] and "is damaged" in failed["c1"]


# -- the results --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_results_parquet_is_one_line_for_every_reader(base, tmp_path: Path, how: str) -> None:
    results = _copy(base, "results", tmp_path)
    path = damage(results / "results.parquet", how)
    for args in (["leaderboard", "build", str(results)],
                 ["leaderboard", "plot", str(results), "--metric", "psnr", "--out", str(tmp_path / "p.png")]):
        line = one_error(run(*args), path)
        assert f"delete it and run `talkface evaluate ... --out {results}` again" in line
    line = one_error(_evaluate(base["data"], base["generated"], "b", results), path)
    assert "is damaged" in line
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_run_record_is_one_line(base, tmp_path: Path, how: str) -> None:
    results = _copy(base, "results", tmp_path)
    path = damage(results / "runs" / "a.json", how)
    line = one_error(run("leaderboard", "build", str(results)), path)
    assert f"run `talkface evaluate --method a --out {results}` again to rewrite it" in line
    # evaluating another method into the folder rebuilds the summary, which reads every run record
    one_error(_evaluate(base["data"], base["generated"], "b", results), path)
    # evaluating the method itself rewrites its record: the fix the message gives
    assert _evaluate(base["data"], base["generated"], "a", results).exit_code == 0
    assert json.loads(path.read_text())["method"] == "a"


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_summary_is_named_and_rebuilt_by_evaluate(base, tmp_path: Path, how: str) -> None:
    from talkface.store.results import ResultsError, ResultsStore

    results = _copy(base, "results", tmp_path)
    path = damage(results / "summary.json", how)
    with pytest.raises(ResultsError) as err:
        ResultsStore.open(results).summary()
    assert str(err.value).startswith(f"{path} is damaged (") and "rebuilds the summary" in str(err.value)
    # no command reads summary.json without rebuilding it first: evaluate writes it from the parquet
    assert _evaluate(base["data"], base["generated"], "b", results).exit_code == 0
    assert set(json.loads(path.read_text())["methods"]) == {"a", "b"}


# -- the generation record ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_generation_record_beside_videos_is_one_line(base, tmp_path: Path, how: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(base["generated"] / "c1.mp4", out / "c1.mp4")
    (out / "generation.json").write_text(json.dumps({"method": "static-frame", "complete": True}, indent=1))
    path = damage(out / "generation.json", how)
    line = one_error(run("baseline", "static-frame", "--data", str(base["data"]), "--part", "test",
                         "--out", str(out)), path)
    assert f"it no longer says which run made the videos in {out}: write to another --out" in line
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == ["c1.mp4", "generation.json"]


def test_another_run_is_refused_naming_each_field_with_both_values(base, tmp_path: Path) -> None:
    """`generate` into a folder of another method said "another part ('pipeline')": each differing
    field is now named with its value there and its value now."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(base["generated"] / "c1.mp4", out / "c1.mp4")
    from talkface.generation.method import CLIP_SEED_RULE

    (out / "generation.json").write_text(json.dumps({"method": "pipeline", "part": "test", "seed": 0,
                                                     "blink_seed_rule": CLIP_SEED_RULE}))
    result = run("baseline", "static-frame", "--data", str(base["data"]), "--part", "test", "--out", str(out))
    line = one_error(result, out)
    assert line == (f"error: {out} already holds videos made with another method ('pipeline' there, "
                    "'static-frame' now): write to another --out, or empty it to redo them")

    from talkface.store.generated_videos import check_same_run

    (out / "generation.json").write_text(json.dumps({
        "method": "pipeline", "part": "val", "seed": 0,
        "checkpoints": {"texture": {"sha256": "a" * 64}, "landmarks": {"sha256": "c" * 64}}}))
    with pytest.raises(ValueError) as err:
        check_same_run(out, {"method": "pipeline", "part": "test", "seed": 3, "checkpoints": {
            "texture": {"sha256": "b" * 64}, "landmarks": {"sha256": "c" * 64}}})
    assert str(err.value) == (
        f"{out} already holds videos made with another part ('val' there, 'test' now), another seed "
        "(0 there, 3 now), another texture checkpoint (sha256 aaaaaaaaaaaa there, sha256 bbbbbbbbbbbb now): "
        "write to another --out, or empty it to redo them")


def test_videos_composed_by_another_rule_are_not_mixed(tmp_path: Path) -> None:
    """A folder written before composite rules had names (the face-parts text under "composite") resumes
    under face-parts and refuses interior."""
    from talkface.generation.composite import RULES
    from talkface.store.generated_videos import check_same_run

    out = tmp_path / "out"
    out.mkdir()
    (out / "c1.mp4").write_bytes(b"")
    (out / "generation.json").write_text(json.dumps({"method": "pipeline", "composite": RULES["face-parts"]}))
    now = {name: {"method": "pipeline", "composite": name, "composite_rule": RULES[name]} for name in RULES}
    check_same_run(out, now["face-parts"])
    with pytest.raises(ValueError, match="another composite rule") as err:
        check_same_run(out, now["interior"])
    assert "'interior' now" in str(err.value)


def test_videos_with_one_blink_seed_for_every_clip_are_not_mixed_with_per_clip_seeds(tmp_path: Path) -> None:
    from talkface.generation.method import CLIP_SEED_RULE, clip_seed
    from talkface.store.generated_videos import check_same_run

    out = tmp_path / "out"
    out.mkdir()
    (out / "c1.mp4").write_bytes(b"")
    (out / "generation.json").write_text(json.dumps({"method": "pipeline", "seed": 0}))
    with pytest.raises(ValueError, match="one seed for every clip there, one per clip now"):
        check_same_run(out, {"method": "pipeline", "seed": 0, "blink_seed_rule": CLIP_SEED_RULE})
    (out / "generation.json").write_text(json.dumps({"method": "pipeline", "seed": 0,
                                                     "blink_seed_rule": CLIP_SEED_RULE}))
    check_same_run(out, {"method": "pipeline", "seed": 0, "blink_seed_rule": CLIP_SEED_RULE})
    # each clip its own seed, the same on every call; the rule's hash by hand for one clip
    ids = [f"s1_clip{i:03d}" for i in range(200)]
    assert len({clip_seed(0, c) for c in ids}) == len(ids)
    assert [clip_seed(0, c) for c in ids] == [clip_seed(0, c) for c in ids]
    assert clip_seed(1, ids[0]) != clip_seed(0, ids[0])
    import hashlib

    digest_hex = hashlib.sha256(b"7:s4_bbilzs").hexdigest()  # first 4 bytes, little-endian
    first_four_reversed = "".join(reversed([digest_hex[i:i + 2] for i in range(0, 8, 2)]))
    assert clip_seed(7, "s4_bbilzs") == int(first_four_reversed, 16)


# -- the study ----------------------------------------------------------------------------------------


def _key() -> dict:
    """A study key as far as reading it goes (the response files below are refused before any check)."""
    from talkface.study.export import KEY_FORMAT

    return {"format": KEY_FORMAT, "study_id": "tfs-0", "design": "ab", "questions": [], "method_order": [],
            "clips": [], "media": {}, "participants": [{"participant": 1, "trials": []}]}


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_study_key_is_one_line(tmp_path: Path, how: str) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps(_key(), indent=1))
    damage(key, how)
    responses = tmp_path / "p1.json"
    responses.write_text("{}")
    result = run("study", "analyze", str(key), str(responses), "--out", str(tmp_path / "report"))
    line = one_error(result, key)
    assert "run the same `talkface study export` command again" in line
    one_error(run("study", "simulate", str(key), "--out", str(tmp_path / "sim")), key)
    assert not (tmp_path / "report").exists() and not (tmp_path / "sim").exists()


@pytest.mark.parametrize("how", HOW)
def test_a_damaged_responses_file_is_one_line(tmp_path: Path, how: str) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps(_key()))
    path = tmp_path / "responses-p001.json"
    path.write_text(json.dumps({"format": "talkface-study-responses", "participant": 1, "trials": []}))
    damage(path, how)
    line = one_error(run("study", "analyze", str(key), str(path), "--out", str(tmp_path / "report")), path)
    assert "get the file again from the participant, or leave it out of the command" in line
    assert not (tmp_path / "report").exists()


def test_videos_made_before_a_generation_rule_existed_are_not_mixed(tmp_path: Path) -> None:
    """A folder whose record predates the mouth-scaled retargeting or the blink hold (no such key) is
    refused by a run that records them; the same rules resume."""
    from talkface.store.generated_videos import check_same_run

    out = tmp_path / "out"
    out.mkdir()
    (out / "c1.mp4").write_bytes(b"")
    now = {"method": "pipeline", "seed": 0, "retarget_mouth_scale": "rule a", "blink_hold": "rule b"}
    (out / "generation.json").write_text(json.dumps({"method": "pipeline", "seed": 0}))
    with pytest.raises(ValueError, match="another retargeting rule .none there.*another blink hold rule"):
        check_same_run(out, now)
    (out / "generation.json").write_text(json.dumps(now))
    check_same_run(out, now)
