"""End to end: real prepared GRID crops scored against themselves (perfect) and degraded copies, the
frame-count rule, the protocol in the run record, the usable rule, and the metric plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from talkface.evaluate.metrics.base import METRICS, MetricUnavailable, get_metric, metric_options
from talkface.evaluate.runner import (
    EvaluateConfig,
    EvaluateError,
    open_reference,
    plan_metrics,
    run_evaluate,
)
from talkface.registry import Registry
from talkface.store.dataset import Dataset, DatasetError
from talkface.store.results import ResultsStore, bootstrap_ci

CORE = ["psnr", "ssim", "ssim:uniform7-gray-range255", "cpbd", "lmd_mouth", "lmd_face", "blink_rate"]
QUIET = {"echo": lambda *_: None}
CPBD = f"cpbd:{get_metric('cpbd').variant}"  # the default variant's label, whatever the metric calls it


def _ok_ids(data: Path) -> list[str]:
    return [r.clip_id for r in Dataset.open(data).records(usable_only=True)]


@pytest.fixture(scope="module")
def setup(prepared_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from talkface.core.media import read_audio, read_video, write_video

    ds = Dataset.open(prepared_grid)
    ids = _ok_ids(prepared_grid)[:2]
    root = tmp_path_factory.mktemp("generated")
    dirs = {name: root / name for name in ("self", "blur", "jpeg", "mouth")}
    for d in dirs.values():
        d.mkdir()
    for cid in ids:
        shutil.copy(ds.crop_path(cid), dirs["self"] / f"{cid}.mp4")  # byte-identical
    cid = ids[0]
    frames = read_video(ds.crop_path(cid))
    audio = read_audio(ds.crop_path(cid))
    blurred = [cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames]
    # the blurred copy is also upscaled to 160 px: the runner must resize it back (flag "resized")
    write_video(dirs["blur"] / f"{cid}.mp4", [cv2.resize(f, (160, 160)) for f in blurred], 25.0, audio)
    jpeg_dir = dirs["jpeg"] / cid
    jpeg_dir.mkdir()
    for i, f in enumerate(frames):  # a folder of frames, JPEG-compressed at quality 8, stored as PNG
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 8])
        cv2.imwrite(str(jpeg_dir / f"{i:04d}.png"), cv2.imdecode(buf, cv2.IMREAD_COLOR))
    lm = ds.load_clip(cid)["landmarks_aligned"]
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
        records[name] = run_evaluate(cfg, **QUIET)
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
        assert 0 < v[CPBD] <= 1
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
    assert _values(df, "blur", cid)[CPBD] < perfect[CPBD]
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
    assert blur["flags"].str.contains("resized:160x160->128x128").all()
    assert not blur["flags"].str.contains("trimmed").any()
    assert (blur["per_frame"].map(len) == 75).all()


def test_run_record_carries_the_protocol(setup) -> None:
    recs, ids = setup["records"], setup["ids"]
    ds = Dataset.open(setup["reference"])
    p = recs["self"]["protocol"]
    assert set(p) == {"dataset", "protocol", "part", "crop_size", "reference", "reference_id",
                      "identity_from"}
    assert p["identity_from"] == "other-clip"  # no generation.json beside the videos: the default
    assert p["dataset"] == "grid" and p["crop_size"] == 128 == ds.crop_size
    assert p["protocol"] == ds.default_protocol
    assert p["reference"] == str(Path(setup["reference"]).resolve())
    parts = {c: part for part, cs in ds.parts().as_dict().items() for c in cs}
    assert p["part"] == (parts[ids[0]] if parts[ids[0]] == parts[ids[1]] else None)
    assert recs["self"]["talkface_version"]
    # the same scored clips give the same reference id; a method scored on fewer clips another one
    assert recs["jpeg"]["protocol"]["reference_id"] == p["reference_id"]
    assert recs["blur"]["protocol"]["reference_id"] != p["reference_id"]
    store = ResultsStore(setup["out"])
    assert store.protocol("self").differences(store.protocol("jpeg")) == []
    blur_id = recs["blur"]["protocol"]["reference_id"]
    assert f"reference_id: {p['reference_id']!r} vs {blur_id!r}" in store.protocol("self").differences(
        store.protocol("blur")
    )


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
    assert summary["methods"]["self"]["trimmed"]["n_clips"] == 0
    assert summary["methods"]["self"]["run"]["protocol"]["dataset"] == "grid"


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

    args = ["evaluate", "--generated", str(setup["dirs"]["self"]), "--data", str(setup["reference"]),
            "--method", "self", "--out", str(out), "--metrics", "psnr"]
    result = CliRunner().invoke(app, args)
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


# -- frame-count mismatch ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lengths(prepared_grid: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Copies of three reference clips cut to 40 frames, 1 frame and 74 frames (of 75)."""
    from talkface.core.media import read_audio, read_video, write_video

    ds = Dataset.open(prepared_grid)
    ids = _ok_ids(prepared_grid)[:3]
    folder = tmp_path_factory.mktemp("lengths")
    cut = dict(zip(ids, (40, 1, 74), strict=True))
    for cid, n in cut.items():
        frames = read_video(ds.crop_path(cid))
        assert len(frames) == 75
        write_video(folder / f"{cid}.mp4", frames[:n], 25.0, read_audio(ds.crop_path(cid)))
    out = tmp_path_factory.mktemp("lengths_results")
    metrics = ["psnr", "blink_rate"]
    records = {
        "strict": run_evaluate(
            EvaluateConfig(folder, prepared_grid, "strict", out, metrics=metrics), **QUIET
        ),
        "trim": run_evaluate(
            EvaluateConfig(folder, prepared_grid, "trim", out, metrics=metrics, trim=True), **QUIET
        ),
    }
    return {"ids": ids, "cut": cut, "out": out, "records": records}


def test_a_clip_more_than_one_frame_off_is_a_recorded_failure(lengths) -> None:
    long_cut, one_frame, almost = lengths["ids"]
    df = ResultsStore(lengths["out"]).read("strict")
    for cid, n in ((long_cut, 40), (one_frame, 1)):
        rows = df[df["clip_id"] == cid]
        # before: the 1-frame video scored PSNR ~33 dB and blink_rate 0.0 on its one frame
        assert rows["value"].isna().all(), rows
        assert rows["error"].str.startswith(f"frame count: generated {n} frames, reference 75").all()
    rows = df[df["clip_id"] == almost]  # one frame short: scored on the 74 frames both have
    assert rows["error"].isna().all() and (rows["flags"] == "trimmed:74vs75").all()
    rec = lengths["records"]["strict"]
    assert rec["frame_count_failures"] == {
        long_cut: {"generated": 40, "reference": 75}, one_frame: {"generated": 1, "reference": 75}
    }
    s = ResultsStore(lengths["out"]).metric_summaries("strict")["psnr:colour-range255-cap100"]
    assert s.n_clips == 1 and s.n_failed == 2


def test_trim_scores_the_overlap_and_the_summary_says_by_how_much(lengths) -> None:
    df = ResultsStore(lengths["out"]).read("trim")
    assert df["error"].isna().all() or set(df.loc[df["error"].notna(), "metric"]) <= {"blink_rate"}
    psnr = df[df["metric"] == "psnr"].set_index("clip_id")
    for cid, n in lengths["cut"].items():
        assert psnr.loc[cid, "flags"] == f"trimmed:{n}vs75" and len(psnr.loc[cid, "per_frame"]) == n
    trimmed = ResultsStore(lengths["out"]).summary()["methods"]["trim"]["trimmed"]
    assert trimmed["n_clips"] == 3
    assert trimmed["frames_dropped_total"] == 35 + 74 + 1 and trimmed["frames_dropped_max"] == 74
    assert lengths["records"]["trim"]["options"]["trim"] is True


# -- the reference side: one usable rule, protocol and part ----------------------------------------


def test_reference_uses_the_dataset_usable_rule_and_parts(prepared_grid: Path, tmp_path: Path) -> None:
    ds = Dataset.open(prepared_grid)
    ref = open_reference(prepared_grid)
    assert sorted(ref.clips) == ds.usable_ids()
    for part, ids in ds.parts().as_dict().items():
        if ids:
            assert sorted(open_reference(prepared_grid, part=part).clips) == ids
    with pytest.raises(DatasetError, match="holds no split protocol 'nope'"):
        open_reference(prepared_grid, protocol="nope")
    with pytest.raises(EvaluateError, match="a part is one of train, val, test"):
        open_reference(prepared_grid, part="dev")
    # a clip marked partial is no reference (the rule generation and training use), and says why
    copy = tmp_path / "ds"
    shutil.copytree(prepared_grid, copy)
    manifest = pd.read_parquet(copy / "manifest.parquet")
    partial = ds.usable_ids()[0]
    manifest.loc[manifest["clip_id"] == partial, "status"] = "partial"
    manifest.to_parquet(copy / "manifest.parquet", index=False)
    ref = open_reference(copy)
    assert partial not in ref.clips and ref.excluded[partial] == "status partial, not usable"


def test_reference_landmarks_are_detected_once_per_clip(
    prepared_grid: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import talkface.core.landmarks as landmarks

    calls = {"track": 0, "detect": 0}
    real = landmarks.get_landmark_backend

    class Counting:
        def __init__(self, inner) -> None:
            self.inner = inner

        def track(self, frames):
            calls["track"] += 1
            return self.inner.track(frames)

        def detect(self, image):
            calls["detect"] += 1
            return self.inner.detect(image)

        def settings(self):
            return self.inner.settings()

    monkeypatch.setattr(landmarks, "get_landmark_backend", lambda *a, **k: Counting(real(*a, **k)))
    gen = tmp_path / "gen"
    gen.mkdir()
    cid = _ok_ids(prepared_grid)[0]
    shutil.copy(Dataset.open(prepared_grid).crop_path(cid), gen / f"{cid}.mp4")
    metrics = ["lmd_mouth", "identity_dlib"]
    cfg = EvaluateConfig(gen, prepared_grid, "once", tmp_path / "res", metrics=metrics,
                         identity_from="same-clip")
    rec = run_evaluate(cfg, **QUIET)
    assert rec["metrics"][1].startswith("identity_dlib")
    # one track per side; the identity image (a frame of the reference) reuses the reference landmarks
    assert calls == {"track": 2, "detect": 0}
    # from another clip (the default), the identity image is detected once more
    calls.update(track=0, detect=0)
    run_evaluate(EvaluateConfig(gen, prepared_grid, "other", tmp_path / "res2", metrics=metrics), **QUIET)
    assert calls == {"track": 2, "detect": 1}
    v = ResultsStore(tmp_path / "res").read()
    identity = v[v["metric"] == "identity_dlib"].iloc[0]
    assert np.isfinite(identity["value"]) and identity["error"] is None, identity["error"]


# -- which metrics run ------------------------------------------------------------------------------


def test_metrics_not_asked_for_are_listed_once_with_the_reason() -> None:
    plan = plan_metrics(None, {})
    assert {"identity_arcface", "lpips", "lse_c", "lse_d"} <= set(plan.not_run)
    assert plan.not_run["lse_c"] == "no --syncnet-model given"
    assert plan.not_run["lpips"] == "no --lpips-backbone or --lpips-weights given"
    line = plan.not_run_line()
    assert "\n" not in line and line.startswith("not run: ")
    assert "lse_c, lse_d (no --syncnet-model given)" in line
    assert {m.name for m in plan.metrics} >= {"psnr", "ssim", "cpbd", "lmd_mouth", "blink_rate"}


@pytest.mark.parametrize(
    ("options", "flag", "metric"),
    [
        ({"arcface_model": "garbage"}, "--arcface-model", "identity_arcface"),
        ({"lpips_weights": "g", "lpips_backbone": "g"}, "--lpips-backbone, --lpips-weights", "lpips"),
        ({"syncnet_model": "garbage"}, "--syncnet-model", "lse_c"),
    ],
)
def test_a_model_file_the_user_named_must_work(tmp_path: Path, options, flag, metric) -> None:
    for key in options:
        (tmp_path / "garbage").write_bytes(b"not a model at all")
        options[key] = str(tmp_path / "garbage")
    with pytest.raises(MetricUnavailable, match=f"^{metric} \\(asked for with {flag}\\) cannot run: "):
        plan_metrics(None, options)


def test_a_model_file_missing_its_companion_says_which(tmp_path: Path) -> None:
    (tmp_path / "heads.pth").write_bytes(b"whatever")
    with pytest.raises(MetricUnavailable, match="^lpips \\(asked for with --lpips-weights\\) also needs "
                       "--lpips-backbone$"):
        plan_metrics(None, {"lpips_weights": str(tmp_path / "heads.pth")})


def test_unused_model_flags_are_reported() -> None:
    plan = plan_metrics(["psnr"], {"arcface_model": "/x.onnx", "syncnet_model": None})
    assert [m.name for m in plan.metrics] == ["psnr"] and plan.unused_options == ["--arcface-model"]
    assert plan.not_run == {}
    plan = plan_metrics(["psnr", "psnr:colour-range255-cap100"], {})  # the same metric named twice
    assert len(plan.metrics) == 1


def test_one_name_variant_parser_and_registry() -> None:
    assert isinstance(METRICS, Registry) and "psnr" in METRICS
    # the variant a user names wins over the default, in get_metric and in the runner alike
    assert get_metric("ssim:uniform7-gray-range255").variant == "uniform7-gray-range255"
    plan = plan_metrics([" ssim : uniform7-gray-range255 "], {})
    assert plan.metrics[0].variant == "uniform7-gray-range255"
    # an explicit option that contradicts the named variant is an error, in both
    with pytest.raises(ValueError, match="sets color='gray' but the options say color='colour'"):
        get_metric("psnr:gray-range255-cap100", color="colour")
    with pytest.raises(ValueError, match="sets color='gray'"):
        metric_options("psnr:gray-range255-cap100", {"color": "colour"}, shared=True)
    with pytest.raises(KeyError, match="has no variant 'nope'; variants: colour-range255-cap100"):
        get_metric("psnr:nope")
    with pytest.raises(KeyError, match="unknown metric 'nope'; known: blink_duration"):
        plan_metrics(["nope"], {})
