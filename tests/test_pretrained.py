"""Shipping trained stages: the export keeps what generation loads (half precision), the exported
folder loads like a training run and generates the same video up to float16 rounding, and `generate`
falls back to the shipped model only when no --checkpoints and no runs/ are there (and says so)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from generation_runs import trained_runs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runs(prepared_grid, tmp_path_factory):
    return trained_runs(prepared_grid, tmp_path_factory)


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    from talkface.train.export import export_stages

    out = tmp_path_factory.mktemp("pretrained")
    export_stages(runs, out, {"command": "test", "trained_on": "GRID s1 (test)", "licence": "CC BY 4.0"})
    return out


def test_export_keeps_only_generation_weights_in_half_precision(runs, exported):
    from talkface.store.checkpoints import find_stage, load_checkpoint
    from talkface.train.export import HALF_MIN_NUMEL

    index = json.loads((exported / "model_index.json").read_text())
    assert set(index["components"]) == {"landmarks", "blinks", "texture"}
    for stage, component in index["components"].items():
        state = load_checkpoint(exported / component["file"])
        assert "optimizers" not in state and "rng" not in state
        (models,) = state["models"].values()
        big = [v for v in models.values() if torch.is_tensor(v) and v.numel() >= HALF_MIN_NUMEL]
        assert big and all(v.dtype == torch.float16 for v in big)
        source = find_stage(runs, stage).load().state
        assert component["bytes"] < (exported / component["file"]).stat().st_size + 1
        for key, value in models.items():  # the same numbers up to float16 rounding
            original = next(m for m in source["models"].values() if key in m)[key]
            if torch.is_tensor(value) and value.is_floating_point():
                assert torch.allclose(value.float(), original.float(), rtol=1e-3, atol=1e-4), (stage, key)
    texture = load_checkpoint(exported / index["components"]["texture"]["file"])
    assert list(texture["models"]) == ["generator_ema"]
    # the index says how the stages read speech and compose frames, as the loaded stages do
    from talkface.generation.generator import load_generator

    gen = load_generator(exported, device="cpu")
    lm = index["components"]["landmarks"]["recipe"]
    assert lm["feature_norm"] == gen.provenance["checkpoints"]["landmarks"]["feature_norm"]
    assert lm["motion_gain"] == pytest.approx(float(gen.landmark_model.motion_gain), abs=1e-4)
    assert index["components"]["texture"]["recipe"]["composite"] == gen.composite
    assert index["components"]["texture"]["recipe"]["base"] == gen.texture_config.base


def test_the_exported_model_generates_like_the_training_run(runs, exported, grid_root):
    """The same audio and identity through the run's stages and the exported ones: landmarks within a
    hundredth of a pixel, frames within a few grey levels (float16 weights)."""
    from talkface.core import media
    from talkface.generation.generator import align_identity, load_generator, render_frames, target_landmarks

    clip = sorted((grid_root / "s1").glob("*.mpg"))[5]
    audio = media.read_audio(clip, sr=16000)[:16000]
    image = next(media.iter_frames(clip))
    outputs = []
    for folder in (runs, exported):
        gen = load_generator(folder, device="cpu")
        crop, points = align_identity(image, gen.size)
        landmarks = target_landmarks(gen, audio, points, seed=0)
        outputs.append((landmarks, np.stack(list(render_frames(gen, crop, landmarks, identity_px=points)))))
    (lm_run, frames_run), (lm_exp, frames_exp) = outputs
    assert np.abs(lm_run - lm_exp).max() < 0.01
    assert np.abs(frames_run.astype(int) - frames_exp.astype(int)).max() <= 4


def test_generate_falls_back_to_the_shipped_model_and_says_so(exported, tmp_path, monkeypatch):
    from talkface.generation import pretrained

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pretrained, "pretrained_dir", lambda: exported)
    assert pretrained.resolve_checkpoints(tmp_path / "mine") == (tmp_path / "mine", None)
    folder, note = pretrained.resolve_checkpoints(None)
    assert folder == exported and "shipped with talkface" in note and "GRID s1 (test)" in note
    (tmp_path / "runs").mkdir()
    assert pretrained.resolve_checkpoints(None) == (pretrained.DEFAULT_RUNS, None)
    monkeypatch.setattr(pretrained, "pretrained_dir", lambda: None)
    (tmp_path / "runs").rmdir()
    assert pretrained.resolve_checkpoints(None) == (pretrained.DEFAULT_RUNS, None)


def test_the_blink_calibration_travels_with_the_exported_weights(runs, tmp_path):
    """A calibration measured with the run's weights is applied to the exported ones (re-keyed to their
    SHA-256); one measured with other weights is not carried."""
    import shutil

    from talkface.generation.generator import apply_calibration, load_generator
    from talkface.store.blink_calibration import read_record, write_calibration
    from talkface.store.checkpoints import find_stage
    from talkface.train.export import export_stages

    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    sources = {s: find_stage(copy, s).load().sha256 for s in ("blinks", "texture")}
    blink_dir = find_stage(copy, "blinks").out_dir
    write_calibration(blink_dir, {"amplitude": 1.4, "applicable": True, "blinks_sha256": sources["blinks"],
                                  "texture_sha256": sources["texture"]})
    index = export_stages(copy, tmp_path / "out", {"command": "test"})
    assert index["blink_calibration"]["carried"] is True
    gen = load_generator(tmp_path / "out", device="cpu")
    applied = apply_calibration(gen, tmp_path / "out" / "blink")
    assert applied["applied"] is True and gen.blink_model.config.amplitude == pytest.approx(1.4)
    assert read_record(tmp_path / "out" / "blink")["measured_with"]["blinks_sha256"] == sources["blinks"]

    write_calibration(blink_dir, {"amplitude": 1.4, "blinks_sha256": "0" * 64, "texture_sha256": "0" * 64})
    index = export_stages(copy, tmp_path / "other", {"command": "test"})
    assert index["blink_calibration"]["carried"] is False
    assert read_record(tmp_path / "other" / "blink") is None


def test_the_shipped_model_is_in_the_package_with_its_provenance():
    """The model the package ships: at most 25 MB, every file's SHA-256 as its index says (recomputed
    here with hashlib), trained by the documented command with a seed, the GRID licence beside it."""
    import hashlib

    from talkface.generation.pretrained import pretrained_dir, pretrained_index

    folder = pretrained_dir()
    assert folder is not None, "talkface/data/pretrained is missing: run scripts/make_pretrained.py"
    index = pretrained_index()
    total = 0
    for stage in ("landmarks", "blinks", "texture"):
        component = index["components"][stage]
        data = (folder / component["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == component["sha256"], stage
        total += len(data)
    assert total <= 25 * 2**20
    assert index["command"].startswith("python scripts/make_pretrained.py") and index["seed"] is not None
    assert "CC BY 4.0" in index["licence"] and "GRID" in index["trained_on"]
