"""``talkface study export``: deterministic, balanced, and nothing published reveals the key."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from test_study_support import TINY_CLIPS, TINY_METHODS, make_tiny_clip, tiny_sources  # noqa: F401
from typer.testing import CliRunner

from talkface.cli import app
from talkface.core.media import probe_video, read_audio, read_video
from talkface.study.export import FIXED_MTIME, ExportConfig, run_export
from talkface.study.media import SAMPLE_RATE, integrated_loudness
from talkface.study.sources import StudyError


def _export(sources, out: Path, **kw) -> object:
    cfg = ExportConfig(methods=[(m, sources[m]) for m in TINY_METHODS], out=out, **{
        "design": "ab", "clips": 3, "participants": 6, "seed": 7, "checks": 1, **kw})
    return run_export(cfg, progress=False)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tiny_sources, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("study_export") / "study"
    result = _export(tiny_sources, out)
    return result, json.loads((out / "key.json").read_text())


def test_export_is_deterministic_for_a_seed(tiny_sources, exported, tmp_path):  # noqa: F811
    result, _ = exported
    again = _export(tiny_sources, tmp_path / "again", workers=2)  # parallel encoding changes nothing
    assert _tree(again.out) == _tree(result.out)  # every byte of site/ and key.json
    other = _export(tiny_sources, tmp_path / "other", seed=8)
    assert _tree(other.out) != _tree(result.out)
    assert (tmp_path / "again" / "key.json").exists() and not list((tmp_path / "again").glob(".staging*"))


def test_balance_in_the_key(exported):
    _, key = exported
    media = key["media"]
    assert key["design"] == "ab" and len(key["participants"]) == 6 and len(key["clips"]) == 3
    orders = Counter()
    pairs = Counter()
    for p in key["participants"]:
        items = [t for t in p["trials"] if t["kind"] == "item"]
        assert len(items) == 3 * 3 and sum(t["kind"] == "check" for t in p["trials"]) == 1
        for t in items:
            methods = tuple(media[v]["method"] for v in t["videos"])
            orders[methods] += 1
            pairs[tuple(sorted(methods))] += 1
            clip = key["items"][t["item"]]["clip"]
            assert media[t["videos"][0]]["clip"] == media[t["videos"][1]]["clip"] == clip
    assert len(pairs) == 3 and set(pairs.values()) == {18}  # 3 pairs x 3 clips x 6 participants / 3
    assert len(orders) == 6 and set(orders.values()) == {9}  # each order of each pair half the time
    per_item = Counter((t["item"], media[t["videos"][0]]["method"])
                       for p in key["participants"] for t in p["trials"] if t["kind"] == "item")
    assert set(per_item.values()) == {3}  # every item in each order for 3 of 6 participants


def test_published_folder_reveals_nothing(tiny_sources, exported):  # noqa: F811
    result, key = exported
    site = result.site
    files = [p for p in site.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "key.json" not in names and (result.out / "key.json").exists()
    assert result.warnings == []
    assert {p.relative_to(site).parts[0] for p in files} == {"index.html", "media"}
    secrets = list(TINY_METHODS) + list(TINY_CLIPS) + [str(p) for p in tiny_sources.values()] + ["degraded"]
    for path in files:  # every byte of every file
        data = path.read_bytes()
        for s in secrets:
            assert s.encode() not in data, f"{s!r} in {path}"
            assert s.encode("utf-16-le") not in data
    videos = sorted((site / "media").iterdir())
    assert len(videos) == result.n_videos == len(key["media"])
    assert all(re.fullmatch(r"[0-9a-f]{16}\.mp4", p.name) for p in videos)
    assert {p.stat().st_size for p in videos} == {result.file_size}  # one byte size for all
    assert {int(p.stat().st_mtime) for p in [*files, site / "media"]} == {FIXED_MTIME}
    html = (site / "index.html").read_text()
    for token in key["media"]:
        assert token in html
    loudness = []
    for p in videos:
        with av.open(str(p)) as c:
            assert {k: v for k, v in c.metadata.items() if k not in ("major_brand", "minor_version",
                                                                     "compatible_brands")} == {}
            for s in c.streams:
                assert set(s.metadata) <= {"language", "handler_name", "vendor_id"}
            v = c.streams.video[0]
            assert (v.codec_context.name, v.codec_context.width, v.codec_context.height) == ("h264", 64, 64)
            assert float(v.average_rate) == 25 and c.streams.audio[0].codec_context.name == "aac"
            assert c.streams.audio[0].codec_context.sample_rate == SAMPLE_RATE
        assert p.read_bytes().count(b"Lavf") == 0 and p.read_bytes().count(b"Lavc") == 0
        if key["media"][p.name]["variant"] == "original":
            loudness.append(integrated_loudness(read_audio(p, sr=SAMPLE_RATE), SAMPLE_RATE))
    # the sources differ in loudness by up to 9.5 dB; the published videos agree to a fraction of a LU
    assert max(loudness) - min(loudness) < 0.5 and abs(np.mean(loudness) + 20) < 0.7


def test_degraded_copy_is_delayed_and_choppy(exported):
    result, key = exported
    degraded = [f for f, m in key["media"].items() if m["variant"] == "degraded"]
    assert degraded
    d = key["media"][degraded[0]]
    original = next(f for f, m in key["media"].items()
                    if m["variant"] == "original" and (m["method"], m["clip"]) == (d["method"], d["clip"]))
    frames = read_video(result.site / "media" / degraded[0]).astype(int)
    changes = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3)) > 1
    assert changes.sum() <= len(frames) // 5 + 1  # held at 5 fps
    a = read_audio(result.site / "media" / original, sr=SAMPLE_RATE)
    b = read_audio(result.site / "media" / degraded[0], sr=SAMPLE_RATE)
    shift = int(0.5 * SAMPLE_RATE)
    assert np.abs(b[: shift - 2000]).max() < 0.01 < np.abs(a[: shift - 2000]).max()


def test_frame_counts_are_matched_per_clip(tmp_path):
    src = {}
    for k, m in enumerate(["longer", "shorter"]):
        for c in ("c1", "c2"):
            make_tiny_clip(tmp_path / m / f"{c}.mp4", seed=k, n_frames=30 if m == "longer" else 26,
                           audio=m == "longer")
        src[m] = tmp_path / m
    res = run_export(ExportConfig(methods=list(src.items()), out=tmp_path / "s", clips=2, participants=2,
                                  checks=0), progress=False)
    key = json.loads(res.key.read_text())
    assert {m["n_frames"] for m in key["media"].values()} == {26}
    assert any("frame counts differ" in w for w in res.warnings)
    borrowed = [m["audio"]["audio_from"] for m in key["media"].values() if m["method"] == "shorter"]
    assert set(borrowed) == {"longer"}  # no audio track of its own: the other method's, same loudness
    for f in key["media"]:
        assert probe_video(res.site / "media" / f).has_audio


def test_designs_and_options(tiny_sources, tmp_path):  # noqa: F811
    mos = _export(tiny_sources, tmp_path / "mos", design="mos", questions=["realism"],
                  custom_questions=[("sharp", "How sharp is it?")], trials=3, participants=3)
    key = json.loads(mos.key.read_text())
    assert [q["id"] for q in key["questions"]] == ["realism", "sharp"]
    assert [q["value"] for q in key["questions"][0]["options"]] == [1, 2, 3, 4, 5]
    assert all(len(p["trials"]) == 3 + 2 for p in key["participants"])  # 3 items + a check's two halves
    rf = _export(tiny_sources, tmp_path / "rf", design="real-or-fake", participants=2, checks=1, trials=4,
                 post_url="https://example.org/collect?x=1")
    html = (rf.site / "index.html").read_text()
    assert "connect-src https://example.org;" in html
    assert '"post_url":"https://example.org/collect?x=1"' in html
    seq = _export(tiny_sources, tmp_path / "seq", layout="sequence", participants=2, size=32, fps=20)
    assert json.loads(seq.key.read_text())["layout"] == "sequence"
    v = probe_video(next((seq.site / "media").iterdir()))
    assert (v.width, v.fps) == (32, 20)


def test_export_warns_when_an_option_names_a_method(tiny_sources, tmp_path):  # noqa: F811
    res = _export(tiny_sources, tmp_path / "s", title="alphamethod against the rest", participants=2)
    assert any("method name 'alphamethod'" in w for w in res.warnings)
    assert not any("betamethod" in w for w in res.warnings)


@pytest.mark.parametrize("kw, message", [
    ({"design": "ab", "only_one": True}, "at least two"),
    ({"design": "real-or-fake", "questions": ["realism"]}, "one fixed question"),
    ({"questions": ["beauty"]}, "unknown question"),
    ({"clips": 99}, "only 4 clips"),
    ({"post_url": "javascript:alert(1)"}, "http"),
    ({"design": "abx"}, "unknown design"),
    ({"trials": 999, "clips": 3}, "trials per participant"),
])
def test_export_refuses_clearly(tiny_sources, tmp_path, kw, message):  # noqa: F811
    methods = [(m, tiny_sources[m]) for m in TINY_METHODS]
    if kw.pop("only_one", False):
        methods = methods[:1]
    with pytest.raises(StudyError, match=message):
        run_export(ExportConfig(methods=methods, out=tmp_path / "s", **kw), progress=False)


def test_sources_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    make_tiny_clip(tmp_path / "a" / "x.mp4", 0)
    make_tiny_clip(tmp_path / "b" / "y.mp4", 1)
    def export(*pairs):
        run_export(ExportConfig(methods=[(n, tmp_path / f) for n, f in pairs], out=tmp_path / "o"))

    with pytest.raises(StudyError, match="no <clip_id>.mp4"):
        export(("a", "a"), ("e", "empty"))
    with pytest.raises(StudyError, match="no clip id is present for every method"):
        export(("a", "a"), ("b", "b"))
    with pytest.raises(StudyError, match="does not exist"):
        export(("a", "nope"), ("b", "b"))
    (tmp_path / "b" / "x.mp4").write_bytes(b"\0\0\0\x20ftypisom" + bytes(300))  # a broken video
    with pytest.raises(StudyError, match="cannot be read.*x.mp4"):
        run_export(ExportConfig(methods=[("a", tmp_path / "a"), ("b", tmp_path / "b")], out=tmp_path / "o",
                                clips=1, size=64), progress=False)
    assert not (tmp_path / "o" / "site").exists() and not list((tmp_path / "o").glob(".staging*"))


def test_cli_export_and_analyze(tiny_sources, tmp_path):  # noqa: F811
    runner = CliRunner()
    help_text = runner.invoke(app, ["study", "export", "--help"], env={"COLUMNS": "200"}).output
    for word in ("--method", "NAME=PATH", "--design", "--post-url", "key.json", "Example"):
        assert word in help_text
    args = ["study", "export", "--design", "ab", "--questions", "realism,lipsync", "--clips", "2",
            "--participants", "4", "--seed", "3", "--out", str(tmp_path / "study")]
    for m in TINY_METHODS[:2]:
        args += ["--method", f"{m}={tiny_sources[m]}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "publish:" in res.output and "keep private:" in res.output
    bad = runner.invoke(app, ["study", "export", "--method", "nonsense", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "NAME=PATH" in bad.output and "Traceback" not in bad.output

    from talkface.study.simulate import simulate

    key = json.loads((tmp_path / "study" / "key.json").read_text())
    resp = tmp_path / "responses"
    resp.mkdir()
    for doc in simulate(key, {TINY_METHODS[0]: 2.0}, seed=1):
        (resp / f"p{doc['participant']}.json").write_text(json.dumps(doc))
    res = runner.invoke(app, ["study", "analyze", str(tmp_path / "study" / "key.json"),
                              *map(str, sorted(resp.iterdir())), "--out", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    assert "4 participants analysed" in res.output
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| alphamethod | betamethod |" in report and (tmp_path / "report" / "plot_realism.png").exists()


def test_grid_fixture_real_against_a_still_baseline(prepared_grid, tmp_path):
    """The real crops of a prepared GRID dataset (through the dataset reader) against a 'still' method
    made here: each clip's first crop frame held for the whole clip, with the clip's audio."""
    from talkface.core.media import write_video
    from talkface.store.dataset import Dataset, is_usable

    ds = Dataset.open(prepared_grid)
    usable = sorted(r.clip_id for r in ds.records() if is_usable(r))[:3]
    still = tmp_path / "still"
    still.mkdir()
    for clip in usable:
        frames = read_video(ds.crop_path(clip))
        write_video(still / f"{clip}.mp4", [frames[0]] * len(frames), 25, read_audio(ds.crop_path(clip)))
    res = run_export(ExportConfig(methods=[("real", prepared_grid), ("still", still)], out=tmp_path / "study",
                                  clips=2, participants=2, seed=1, checks=1), progress=False)
    key = json.loads(res.key.read_text())
    assert key["methods"]["real"]["kind"] == "dataset" and key["methods"]["still"]["kind"] == "videos"
    assert [c["method"] for c in key["checks"]] == ["real"]  # checks use the real recordings
    assert set(key["clips"]) <= set(usable)
    assert probe_video(next((res.site / "media").iterdir())).width == ds.crop_size
    for path in (res.site / "media").iterdir():
        data = path.read_bytes()
        assert b"still" not in data and not any(c.encode() in data for c in usable)
