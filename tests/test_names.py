"""The names rule (talkface/utils/names.py): a user-given name that becomes a file name never leaves the
folder a command writes to, and every table shows the name as it was given.

The rule's expected stems are written out by hand here (the hash part is the SHA-256 of the name,
computed with hashlib); the commands are checked by snapshotting the folder around ``--out`` before
and after each run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from talkface.cli import app
from talkface.utils.names import NameRefused, check_name, file_stem, inside, split_name_path

LONG = "x" * 300
HOSTILE = ["../../victim", "a/b/c", "/abs/olute", LONG, "ours é/中文", "our s=v2"]


def sha10(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]


# -- the rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ours", "static-frame", "ground-truth", "v1.2", "A_b+c", "9lives"])
def test_a_plain_name_is_its_own_file_stem(name: str) -> None:
    assert file_stem(name) == name


@pytest.mark.parametrize(("name", "slug"), [
    ("../../victim", "victim"),
    ("a/b/c", "a-b-c"),
    ("/abs/olute", "abs-olute"),
    ("ours é/中文", "ours-e"),
    ("our s=v2", "our-s-v2"),
    (".hidden", "hidden"),
    ("ends.", "ends"),
    ("..", ""),
    ("中文", ""),
    ("a" * 81, "a" * 48),
    (LONG, "x" * 48),
    ("é" * 60, "e" * 48),
])
def test_any_other_name_gets_a_slug_and_its_hash(name: str, slug: str) -> None:
    expected = f"{slug}-{sha10(name)}" if slug else sha10(name)
    assert file_stem(name) == expected
    assert "/" not in expected and len(expected) <= 59


def test_two_names_with_one_slug_get_two_stems() -> None:
    assert file_stem("a/b") != file_stem("a b") != file_stem("a:b")
    assert file_stem("a/b").startswith("a-b-") and file_stem("a b").startswith("a-b-")


@pytest.mark.parametrize(("name", "says"), [
    ("", "is empty"),
    ("   ", "is empty"),
    ("a\x00b", "control characters ('\\x00')"),
    ("a\nb", "control characters ('\\n')"),
    ("tab\there", "control characters ('\\t')"),
    ("\udcff", "control characters"),
    (" ours", "starts or ends with white space"),
    ("ours ", "starts or ends with white space"),
])
def test_names_no_table_can_show_are_refused(name: str, says: str) -> None:
    with pytest.raises(NameRefused, match=r"^the method name .*") as err:
        file_stem(name, "method name")
    assert says in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(NameRefused):
        check_name(name)


def test_inside_keeps_a_file_name_in_its_folder(tmp_path: Path) -> None:
    assert inside(tmp_path, "s1_x.mp4") == tmp_path / "s1_x.mp4"
    for bad in ("../x.mp4", "/etc/passwd", "a\\b.mp4", "..", ".", "a\x00.mp4", ""):
        with pytest.raises(NameRefused, match="is not a file name in"):
            inside(tmp_path, bad)


def test_name_path_splits_where_an_existing_path_follows() -> None:
    paths = {"out/ours", "x=out/ours2", "v.mp4", "b=c", "c"}

    def exists(p: str) -> bool:
        return p in paths

    assert split_name_path("ours=out/ours", exists) == ("ours", "out/ours")
    assert split_name_path("our s=v2=out/ours", exists) == ("our s=v2", "out/ours")
    assert split_name_path("n=x=out/ours2", exists) == ("n", "x=out/ours2")
    assert split_name_path("v.mp4", exists) == (None, "v.mp4")
    assert split_name_path("missing.mp4", exists) == (None, "missing.mp4")
    assert split_name_path("real=missing.mp4", exists) == ("real", "missing.mp4")  # says which is missing
    with pytest.raises(NameRefused, match="can be read 2 ways"):
        split_name_path("a=b=c", exists)  # 'a' = 'b=c' or 'a=b' = 'c'


# -- the commands -------------------------------------------------------------------------------------


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (but those under ``skip``) -> (size, mtime in ns) of a file, or
    (-1, 0) for a folder (whose mtime changes when ``skip`` is made in it)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
    return out


def tiny_dataset(root: Path, clips: dict[str, str], size: int = 32, n_frames: int = 6,
                 protocol: str = "alpha") -> Path:
    """A prepared dataset made by hand through the writer: ``clips`` (id -> part), each with a crop
    video of flat grey frames and a tone, and landmarks in clips/<id>.npz (no media pipeline, a second
    to make)."""
    from talkface.generation.generator import write_video
    from talkface.store.dataset_writer import DatasetStore

    store = DatasetStore(root)
    store.claim({"corpus": "synthetic", "fps": 25.0, "crop_size": size, "landmark_backend": "dlib",
                 "feature_backend": "logmel"})
    store.add_protocol(protocol, clips)
    rng = np.random.default_rng(0)
    for i, (cid, part) in enumerate(sorted(clips.items())):
        store.write_row({"clip_id": cid, "corpus": "synthetic", "speaker": "p1", "split": part,
                         "status": "ok", "n_frames": n_frames, "fps": 25.0, "flags": "", "face_ratio": 1.0})
        points = ((rng.random((n_frames, 68, 2)) * 0.5 + 0.25) * size).astype(np.float32)
        store.write_clip(cid, landmarks_aligned=points, landmarks=points)
        frames = [np.full((size, size, 3), 40 + 30 * i, np.uint8) for _ in range(n_frames)]
        t = np.arange(int(16000 * n_frames / 25.0)) / 16000.0
        tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        write_video(store.crop_path(cid), frames, tone, 25.0)
    store.write_manifest()
    return root


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny dataset and generated videos: byte copies of its crops."""
    base = tmp_path_factory.mktemp("names")
    data = tiny_dataset(base / "data", {"c1": "test", "c2": "test"})
    generated = base / "generated"
    generated.mkdir()
    for cid in ("c1", "c2"):
        shutil.copy(data / "crops" / f"{cid}.mp4", generated / f"{cid}.mp4")
    return {"data": data, "generated": generated}


def _evaluate(scored: dict[str, Path], method: str, out: Path):
    return CliRunner().invoke(app, ["evaluate", "--generated", str(scored["generated"]), "--data",
                                    str(scored["data"]), "--metrics", "psnr", "--method", method,
                                    "--out", str(out)], env={"COLUMNS": "100"})


def test_evaluate_writes_every_name_inside_out_and_tables_show_it(scored, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    victim = work / "victim.json"
    victim.write_text('{"keep": true}\n')
    out = work / "res"
    before = snapshot(tmp_path, skip=out)
    for name in HOSTILE:
        result = _evaluate(scored, name, out)
        assert result.exit_code == 0, (name, result.output)
        assert name in result.output  # the summary table and the counts line show the name itself
    assert snapshot(tmp_path, skip=out) == before  # nothing outside --out, the victim untouched
    assert victim.read_text() == '{"keep": true}\n'
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == sorted(f"{file_stem(n)}.json" for n in HOSTILE)  # flat: no folder under runs/
    assert all((out / "runs" / f).is_file() for f in runs)
    for name in HOSTILE:  # the original name is kept inside the file
        assert json.loads((out / "runs" / f"{file_stem(name)}.json").read_text())["method"] == name
    from talkface.store.results import ResultsStore

    store = ResultsStore.open(out)
    assert store.methods() == sorted(HOSTILE)
    assert store.run_record("ours é/中文")["method"] == "ours é/中文"
    board = CliRunner().invoke(app, ["leaderboard", "build", str(out), "--format", "csv"])
    assert board.exit_code == 0, board.output
    rows = [line.split(",")[1] for line in board.output.splitlines() if line.startswith("measured,")]
    assert set(rows) >= {"../../victim", "a/b/c", "/abs/olute", LONG, "ours é/中文", "our s=v2"}


def test_evaluate_refuses_a_name_no_table_can_show_before_scoring(scored, tmp_path: Path) -> None:
    out = tmp_path / "res"
    before = snapshot(tmp_path)
    for name in ("a\x00b", "line\nbreak", " ours", ""):
        result = _evaluate(scored, name, out)
        assert result.exit_code == 2, (name, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "method name" in errors[0], result.output
        assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before  # refused before anything was written


def test_evaluate_refuses_a_file_another_name_holds(scored, tmp_path: Path) -> None:
    """On a case-insensitive file system ``Ours`` and ``ours`` share runs/ours.json: the name recorded
    in the file tells them apart, and the second is refused (simulated by writing that file)."""
    out = tmp_path / "res"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "ours.json").write_text(json.dumps({"method": "Ours"}))
    result = _evaluate(scored, "ours", out)
    assert result.exit_code == 2, result.output
    assert "holds method 'Ours', whose file name is the same as 'ours'" in " ".join(result.output.split())
    assert not (out / "results.parquet").exists()


def _video(path: Path, n: int = 8, value: int = 100) -> Path:
    from talkface.generation.generator import write_video

    write_video(path, [np.full((32, 32, 3), value, np.uint8) for _ in range(n)], None, 25.0)
    return path


def test_compare_names_are_labels_and_only_out_is_written(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    real = _video(src / "real.mp4", value=200)
    ours = _video(src / "ours.mp4", value=90)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "cmp.mp4"
    before = snapshot(tmp_path, skip=out)
    runner = CliRunner()
    for name in HOSTILE:
        result = runner.invoke(app, ["compare", f"real={real}", f"{name}={ours}", "--out", str(out)])
        assert result.exit_code == 0, (name, result.output)
        assert f": real | {name}, " in result.output
    assert snapshot(tmp_path, skip=out) == before
    for bad in ("a\x00b", " ours"):
        result = runner.invoke(app, ["compare", f"real={real}", f"{bad}={ours}", "--out",
                                     str(tmp_path / "x.mp4")])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "input name" in result.output
    # --clip names a file in the folder, never a path out of it
    (tmp_path / "secret.mp4").write_bytes(real.read_bytes())
    result = runner.invoke(app, ["compare", f"real={src}", "--clip", "../secret", "--out",
                                 str(tmp_path / "y.mp4")])
    assert result.exit_code == 2 and "is not a file name in" in " ".join(result.output.split())
    assert not (tmp_path / "y.mp4").exists()


def test_compare_reads_a_name_with_spaces_and_equals_like_evaluate(tmp_path: Path) -> None:
    from talkface.generation.compare import parse_inputs

    video = _video(tmp_path / "v.mp4")
    assert parse_inputs([f"our s={video}"]) == [("our s", video)]
    assert parse_inputs([f"a=b={video}"]) == [("a=b", video)]
    assert parse_inputs([str(video)]) == [("v", video)]


@pytest.mark.filterwarnings("ignore:Glyph:UserWarning", "ignore:Tight layout:UserWarning")  # CJK in plots
def test_study_export_and_analyze_keep_names_inside_out(tmp_path: Path) -> None:
    from test_study_support import make_tiny_sources

    from talkface.study.simulate import simulate

    names = ["../../victim", "ours é/中文", "our s=v2", LONG]
    sources = make_tiny_sources(tmp_path / "src", methods=names, clips=("c1", "c2"))
    work = tmp_path / "work"
    work.mkdir()
    study, report = work / "study", work / "report"
    before = snapshot(tmp_path, skip=study)
    args = ["study", "export", "--design", "mos", "--questions", "realism", "--clips", "1",
            "--participants", "2", "--checks", "0", "--seed", "1", "--out", str(study)]
    for name in names:
        args += ["--method", f"{name}={sources[name]}"]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, skip=study) == before
    key = json.loads((study / "key.json").read_text())
    assert key["method_order"] == names and set(key["methods"]) == set(names)
    # a key is input: a question id that is a path gives a plot named by the rule, inside --out
    key["questions"][0]["id"] = "../../evil"
    for p in key["participants"]:
        for t in p["trials"]:
            t.pop("expected", None)
    (study / "key.json").write_text(json.dumps(key))
    responses = work / "responses"
    responses.mkdir()
    for doc in simulate(key, {}, seed=1):
        (responses / f"p{doc['participant']}.json").write_text(json.dumps(doc))
    before = snapshot(tmp_path, skip=report)
    result = runner.invoke(app, ["study", "analyze", str(study / "key.json"),
                                 *map(str, sorted(responses.iterdir())), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, skip=report) == before
    assert sorted(p.name for p in report.iterdir()) == sorted(
        ["report.md", "results.json", f"plot_evil-{sha10('../../evil')}.png"])
    results = json.loads((report / "results.json").read_text())
    assert results["methods"] == names
    assert "ours é/中文" in (report / "report.md").read_text()


def test_study_export_refuses_a_name_no_table_can_show(tmp_path: Path) -> None:
    from test_study_support import make_tiny_sources

    sources = make_tiny_sources(tmp_path / "src", methods=("a", "b"), clips=("c1",))
    result = CliRunner().invoke(app, ["study", "export", "--method", f"a\x01={sources['a']}", "--method",
                                      f"b={sources['b']}", "--out", str(tmp_path / "study")])
    assert result.exit_code == 2 and "control characters" in result.output, result.output
    assert not (tmp_path / "study").exists()
