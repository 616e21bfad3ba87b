"""`talkface baseline <name>`: each built-in baseline writes videos exactly as `generate --data` does
(names, frame counts, audio track, codec), on the real GRID crops of the `prepared_grid` fixture.

PSNR is computed by scikit-image, independently of talkface's metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from generation_runs import one_line, psnr, trained_runs, usable_part
from typer.testing import CliRunner

torch.set_num_threads(1)

# ground-truth is the reference re-encoded once more by the same codec at the same quality (x264 CRF 18);
# on the GRID fixture crops this measures 44-46 dB, the codec's floor for pixel metrics.
GROUND_TRUTH_PSNR_MIN = 40.0
# static-frame: every decoded frame is the identity frame up to one H.264 encode
STATIC_PSNR_MIN = 38.0


@pytest.fixture(scope="module")
def runs(prepared_grid, tmp_path_factory):
    return trained_runs(prepared_grid, tmp_path_factory)


def _baseline(name: str, data, out, *extra: str):
    from talkface.cli import app

    return CliRunner().invoke(app, ["baseline", name, "--data", str(data), "--out", str(out),
                                    "--device", "cpu", "--quiet", *extra])


def _check_like_generate(data, out, clip_ids, method: str) -> dict:
    """One <clip_id>.mp4 per clip with the reference's frame count and an audio track; the summary."""
    from talkface.core import media
    from talkface.store.dataset import Dataset

    ds = Dataset.open(data)
    assert sorted(p.stem for p in out.glob("*.mp4")) == clip_ids
    for clip_id in clip_ids:
        video = out / f"{clip_id}.mp4"
        assert len(media.read_video(video)) == ds.record(clip_id).n_frames
        info = media.probe_video(video)
        assert info.has_audio and (info.width, info.height) == (ds.crop_size, ds.crop_size)
    summary = json.loads((out / "generation.json").read_text())
    assert summary["method"] == method and summary["definition"] and summary["complete"]
    assert summary["video"]["crf"] == 18 and not summary["failed"]
    return summary


def test_every_registered_baseline_has_its_command():
    from talkface.cli import app
    from talkface.generation.baselines import BASELINES

    assert BASELINES.names() == ["ground-truth", "mean-face", "no-blinks", "oracle-landmarks", "oracle-warp",
                                 "static-frame", "warp", "warp-tps"]
    result = CliRunner().invoke(app, ["baseline", "--help"])
    assert result.exit_code == 0
    for name in BASELINES.names():
        assert name in result.output


def test_ground_truth_scores_the_codec_floor(prepared_grid, tmp_path):
    from talkface.core import media
    from talkface.store.dataset import Dataset

    ds = Dataset.open(prepared_grid)
    part, clip_ids = usable_part(prepared_grid)
    out = tmp_path / "gt"
    result = _baseline("ground-truth", prepared_grid, out, "--part", part,
                       "--checkpoints", str(tmp_path / "none"))  # needs no trained stage
    assert result.exit_code == 0, result.output
    summary = _check_like_generate(prepared_grid, out, clip_ids, "ground-truth")
    assert summary["checkpoints"] == {} and summary["stages"] == []
    for clip_id in clip_ids:
        value = psnr(media.read_video(out / f"{clip_id}.mp4"), media.read_video(ds.crop_path(clip_id)))
        assert value > GROUND_TRUTH_PSNR_MIN, (clip_id, value)


@pytest.mark.parametrize("identity_from", ["other-clip", "same-clip"])
def test_static_frame_repeats_the_identity_frame(identity_from, prepared_grid, tmp_path):
    """The identity frame is the frame-rule's pick in the next clip of the same speaker (clip-id order,
    wrapping round) by default, in the clip itself with --identity-from same-clip."""
    from talkface.core import media
    from talkface.core.face68 import choose_identity_frame
    from talkface.store.dataset import Dataset

    ds = Dataset.open(prepared_grid)
    part, clip_ids = usable_part(prepared_grid)
    out = tmp_path / "static"
    result = _baseline("static-frame", prepared_grid, out, "--part", part, "--identity-from", identity_from)
    assert result.exit_code == 0, result.output
    summary = _check_like_generate(prepared_grid, out, clip_ids, "static-frame")
    assert summary["identity_from"] == identity_from
    for clip_id in clip_ids:
        speaker = ds.record(clip_id).speaker
        others = sorted(r.clip_id for r in ds.records(usable_only=True)
                        if r.speaker == speaker and r.clip_id != clip_id)
        source = clip_id if identity_from == "same-clip" or not others else next(
            (c for c in others if c > clip_id), others[0])
        assert summary["identity_sources"][clip_id]["clip"] == source
        reference = media.read_video(ds.crop_path(clip_id))
        lm = ds.load_clip(source)["landmarks_aligned"]
        identity = media.read_video(ds.crop_path(source))[choose_identity_frame(lm)]
        video = media.read_video(out / f"{clip_id}.mp4")
        assert len(video) == len(reference)
        for frame in video:
            assert psnr(frame, identity) > STATIC_PSNR_MIN
        # it is a still: consecutive frames are identical after decoding up to codec noise
        assert np.abs(np.diff(video.astype(np.int16), axis=0)).mean() < 1.0


@pytest.mark.parametrize("name", ["oracle-landmarks", "mean-face", "no-blinks"])
def test_trained_baselines_match_generate_layout(name, runs, prepared_grid, tmp_path):
    from talkface.store.checkpoints import find_stage
    from talkface.utils.provenance import sha256_file

    part, clip_ids = usable_part(prepared_grid)
    out = tmp_path / name
    result = _baseline(name, prepared_grid, out, "--part", part, "--checkpoints", str(runs))
    assert result.exit_code == 0, result.output
    summary = _check_like_generate(prepared_grid, out, clip_ids, name)
    stages = {"oracle-landmarks": ["texture"], "mean-face": ["landmarks", "texture"],
              "no-blinks": ["landmarks", "texture"]}[name]
    assert summary["stages"] == stages and sorted(summary["checkpoints"]) == stages
    for stage in stages:
        loaded = find_stage(runs, stage).weights_path()
        assert summary["checkpoints"][stage]["sha256"] == sha256_file(loaded)


def test_no_blinks_keeps_the_mouth_and_leaves_the_eyes_to_the_landmark_stage(runs, prepared_grid):
    from talkface.generation.generator import (
        clip_inputs,
        landmarks_from_features,
        load_generator,
        speech_landmarks,
        to_identity,
    )
    from talkface.store.dataset import Dataset

    ds = Dataset.open(prepared_grid)
    clip = clip_inputs(ds, usable_part(prepared_grid)[1][0])
    gen = load_generator(runs, "cpu")
    crop, px = clip.identity_at(gen.size)
    feats = gen.features.compute(clip.audio, n_frames=clip.n_frames, fps=clip.fps)
    full = landmarks_from_features(gen, feats, px, seed=3)
    off = landmarks_from_features(gen, feats, px, seed=3, blinks=False)
    from talkface.models.blinks import point_set

    eyes = point_set(gen.blink_model.config.points)  # the eyes, and the brows in new blink stages
    assert set(range(36, 48)) <= set(eyes.tolist())
    rest = np.setdiff1d(np.arange(68), eyes)
    assert full.shape == off.shape == (clip.n_frames, 68, 2)
    np.testing.assert_array_equal(off[:, rest], full[:, rest])  # same mouth, jaw, nose
    untouched = to_identity(gen, speech_landmarks(gen, feats), px, gen.size)  # the landmark stage's eyes
    np.testing.assert_allclose(off[:, eyes], untouched[:, eyes], atol=1e-5)
    assert np.abs(full[:, eyes] - off[:, eyes]).max() > 1e-3  # the full pipeline's eyes are the blinks'


def test_baseline_without_its_checkpoint_names_the_train_command(prepared_grid, tmp_path):
    empty = tmp_path / "runs"
    empty.mkdir()
    for name, stage, folder in (("oracle-landmarks", "texture", "tex"), ("mean-face", "landmarks", "lm")):
        result = _baseline(name, prepared_grid, tmp_path / name, "--checkpoints", str(empty))
        text = one_line(result.output)
        assert result.exit_code == 2, text
        assert f"baseline {name} needs a trained '{stage}' stage" in text
        assert f"`talkface train {stage} --data {prepared_grid} --out {empty / folder}`" in text
        assert "Traceback" not in result.output and not list((tmp_path / name).glob("*.mp4"))


def test_a_folder_of_another_method_is_not_mixed(prepared_grid, tmp_path):
    part, _ = usable_part(prepared_grid)
    out = tmp_path / "out"
    assert _baseline("static-frame", prepared_grid, out, "--part", part).exit_code == 0
    result = _baseline("ground-truth", prepared_grid, out, "--part", part)
    assert result.exit_code == 2
    assert "already holds videos made with another method" in one_line(result.output)
