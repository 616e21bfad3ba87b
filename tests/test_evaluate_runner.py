"""End to end: real prepared GRID crops scored against themselves (perfect) and degraded copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from talkface.store.results import ResultsStore, bootstrap_ci
from talkface.evaluate.runner import EvaluateConfig, run_evaluate

CORE = ["psnr", "ssim", "ssim:uniform7-gray-range255", "cpbd", "lmd_mouth", "lmd_face", "blink_rate"]
N_DEGRADED = 40  # degraded copies are shorter than the reference: also exercises trimming


@pytest.fixture(scope="module")
def setup(prepared_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from talkface.preprocess.media import read_audio, read_video, write_video
    from talkface.preprocess.store import DatasetStore

    store = DatasetStore(prepared_grid)
    manifest = store.read_manifest()
    ids = sorted(manifest[manifest["status"] == "ok"]["clip_id"])[:2]
    root = tmp_path_factory.mktemp("generated")
    dirs = {name: root / name for name in ("self", "blur", "jpeg", "mouth")}
    for d in dirs.values():
        d.mkdir()
    for cid in ids:
        shutil.copy(store.crop_path(cid), dirs["self"] / f"{cid}.mp4")  # byte-identical
    cid = ids[0]
    frames = read_video(store.crop_path(cid))[:N_DEGRADED]
    audio = read_audio(store.crop_path(cid))
    blurred = [cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames]
    # the blurred copy is also upscaled to 160 px: the runner must resize it back (flag "resized")
    write_video(dirs["blur"] / f"{cid}.mp4", [cv2.resize(f, (160, 160)) for f in blurred], 25.0, audio)
    jpeg_dir = dirs["jpeg"] / cid
    jpeg_dir.mkdir()
    for i, f in enumerate(frames):  # a folder of frames, JPEG-compressed at quality 8, stored as PNG
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 8])
        cv2.imwrite(str(jpeg_dir / f"{i:04d}.png"), cv2.imdecode(buf, cv2.IMREAD_COLOR))
    lm = store.load_clip(cid)["landmarks_aligned"][:N_DEGRADED]
    shifted = []
    for f, pts in zip(frames, lm, strict=True):  # the mouth region moved down by 5 px
        x0, y0 = np.floor(np.nanmin(pts[48:68], axis=0)).astype(int) - 3
        x1, y1 = np.ceil(np.nanmax(pts[48:68], axis=0)).astype(int) + 3
        g = f.copy()
        g[y0 + 5 : y1 + 5, x0:x1] = f[y0:y1, x0:x1]
        shifted.append(g)
    write_video(dirs["mouth"] / f"{cid}.mp4", shifted, 25.0, audio)
    (dirs["mouth"] / "not_a_clip.mp4").write_bytes(b"no reference for this one")
    (dirs["jpeg"] / f"{ids[1]}.mp4").write_bytes(b"this is not a video")  # corrupt
    out = root / "results"
    records = {}
    for name, d in dirs.items():
        cfg = EvaluateConfig(d, prepared_grid, name, out, metrics=CORE, workers=2 if name == "self" else 1)
        records[name] = run_evaluate(cfg, echo=lambda *_: None)
    return {"ids": ids, "out": out, "records": records, "dirs": dirs, "reference": prepared_grid}


def _values(df: pd.DataFrame, method: str, clip_id: str) -> dict[str, float]:
    sub = df[(df["method"] == method) & (df["clip_id"] == clip_id)]
    return {f"{m}:{v}": val for m, v, val in zip(sub["metric"], sub["variant"], sub["value"], strict=True)}


def test_self_evaluation_is_perfect(setup) -> None:
    df = ResultsStore(setup["out"]).read()
    for cid in setup["ids"]:
        v = _values(df, "self", cid)
        assert v["psnr:colour-range255-cap100"] == 100.0  # identical frames: infinite PSNR, capped
        assert v["ssim:gaussian11-colour-range255"] == pytest.approx(1.0, abs=1e-12)
        assert v["ssim:uniform7-gray-range255"] == pytest.approx(1.0, abs=1e-12)
        assert v["lmd_mouth:centroid-mean"] == 0.0
        assert v["lmd_face:centroid-mean"] == 0.0
        assert 0 < v["cpbd:gray8-block64"] <= 1
    rows = df[df["method"] == "self"]
    assert rows["error"].isna().all()
    assert len(rows) == len(setup["ids"]) * len(CORE)
    assert (rows["per_frame"].map(len) == 75).all()


def test_degraded_copies_move_every_metric_the_right_way(setup) -> None:
    df = ResultsStore(setup["out"]).read()
    cid = setup["ids"][0]
    perfect = _values(df, "self", cid)
    for method in ("blur", "jpeg", "mouth"):
        v = _values(df, method, cid)
        assert v["psnr:colour-range255-cap100"] < 45, method
        assert v["ssim:gaussian11-colour-range255"] < 0.99, method
        assert v["ssim:uniform7-gray-range255"] < 0.99, method
        assert v["lmd_mouth:centroid-mean"] > 0, method
    assert _values(df, "blur", cid)["cpbd:gray8-block64"] < perfect["cpbd:gray8-block64"]
    mouth = _values(df, "mouth", cid)
    assert mouth["lmd_mouth:centroid-mean"] > 0.5  # the mouth moved 5 px against the face
    assert mouth["lmd_face:centroid-mean"] > 0.1
    assert (
        mouth["ssim:gaussian11-colour-range255"] > _values(df, "blur", cid)["ssim:gaussian11-colour-range255"]
    )


def test_pairing_flags_and_failures_are_recorded(setup) -> None:
    recs, ids = setup["records"], setup["ids"]
    assert recs["mouth"]["pairing"]["generated_without_reference"] == ["not_a_clip"]
    assert ids[1] in recs["mouth"]["pairing"]["reference_without_generated"]
    assert recs["jpeg"]["unreadable_clips"] == [ids[1]]
    df = ResultsStore(setup["out"]).read()
    bad = df[(df["method"] == "jpeg") & (df["clip_id"] == ids[1])]
    assert len(bad) == len(CORE) and bad["value"].isna().all() and bad["error"].str.startswith("video:").all()
    blur = df[(df["method"] == "blur")]
    assert blur["flags"].str.contains("trimmed:40vs75").all() and blur["flags"].str.contains("resized").all()
    assert (blur["per_frame"].map(len) == N_DEGRADED).all()


def test_summary_has_statistics_and_definitions(setup) -> None:
    summary = json.loads((setup["out"] / "summary.json").read_text())
    assert set(summary["methods"]) == {"self", "blur", "jpeg", "mouth"}
    s = summary["methods"]["self"]["metrics"]["psnr:colour-range255-cap100"]
    assert s["n_clips"] == 2 and s["mean"] == 100.0 and s["ci95"] == [100.0, 100.0]
    jpeg = summary["methods"]["jpeg"]["metrics"]["ssim:gaussian11-colour-range255"]
    assert jpeg["n_failed"] == 1 and jpeg["n_clips"] == 1
    d = summary["methods"]["self"]["metrics"]["lmd_mouth:centroid-mean"]["definition"]
    assert d["variant"] == "centroid-mean" and d["detector"]["predictor_sha256"]
    assert "128x128" in d["resolution"] and d["talkface_version"]
    assert summary["bootstrap"]["n_boot"] == 2000 and summary["bootstrap"]["seed"] == 0


def test_bootstrap_interval_matches_normal_theory() -> None:
    values = np.random.default_rng(3).normal(10.0, 2.0, 400)
    lo, hi = bootstrap_ci(values)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)  # the CLT interval it should approach
    assert lo == pytest.approx(values.mean() - half, abs=0.05) and hi == pytest.approx(
        values.mean() + half, abs=0.05
    )
    assert bootstrap_ci(values) == (lo, hi)  # seeded


def test_rerun_replaces_only_that_method(setup, tmp_path) -> None:
    out = tmp_path / "results"
    shutil.copytree(setup["out"], out)
    before = ResultsStore(out).read()
    from talkface.cli import app

    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--generated",
            str(setup["dirs"]["self"]),
            "--reference",
            str(setup["reference"]),
            "--method",
            "self",
            "--out",
            str(out),
            "--metrics",
            "psnr",
        ],
    )
    assert result.exit_code == 0, result.output
    after = ResultsStore(out).read()
    assert len(after[after["method"] == "self"]) == len(setup["ids"])  # replaced, not appended
    others = before[before["method"] != "self"].reset_index(drop=True)
    pd.testing.assert_frame_equal(after[after["method"] != "self"].reset_index(drop=True), others)


def test_metrics_list_command_shows_core_and_learned() -> None:
    from talkface.cli import app

    result = CliRunner().invoke(app, ["metrics", "list"])
    assert result.exit_code == 0, result.output
    for name in ("psnr", "ssim", "cpbd", "lmd_mouth", "blink_rate", "lpips", "lse_c", "identity_dlib"):
        assert name in result.output
