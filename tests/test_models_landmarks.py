"""Speech -> landmarks: shapes, loss by hand, data windows and splits, overfitting real data, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from talkface.models import data as mdata
from talkface.models.fabric_loop import TrainSettings, find_stage_checkpoint, load_checkpoint, run_training
from talkface.models.speech_to_landmarks import (
    LandmarkConfig,
    LandmarkStage,
    SpeechToLandmarks,
    landmark_errors,
    landmark_loss,
    load_landmark_stage,
    predict_landmarks,
)
from talkface.preprocess.alignment import load_template
from talkface.preprocess.store import DatasetStore

torch.set_num_threads(1)


def make_synthetic_store(root: Path, n_clips: int = 6, t: int = 40, d: int = 8, splits: tuple[str, ...] = (),
                         seed: int = 0) -> Path:
    """A store whose mouth opening is the centre frame's first feature (learnable from speech)."""
    rng = np.random.default_rng(seed)
    store = DatasetStore(root)
    template = load_template(128)
    for i in range(n_clips):
        cid = f"syn_{i:02d}"
        feats = rng.normal(size=(t, 16, d)).astype(np.float32)
        opening = 3.0 * np.tanh(feats[:, 8, 0])
        pts = np.repeat(template[None], t, axis=0).copy()
        pts[:, 57:60, 1] += opening[:, None]  # lower lip down
        pts[:, 65:68, 1] += opening[:, None]
        face = np.ones(t, bool)
        face[5] = False
        pts[5] = np.nan
        store.write_clip(cid, landmarks=pts, face_found=face, transform=np.zeros((t, 2, 3), np.float32),
                         landmarks_aligned=pts, audio_features=feats.astype(np.float16))
        split = splits[i] if splits else ("train" if i < n_clips - 1 else "test")
        store.write_row({"clip_id": cid, "corpus": "synthetic", "speaker": "p1", "split": split,
                         "n_frames": t, "fps": 25.0, "status": "ok", "crop_size": 128,
                         "feature_backend": "synthetic"})
    store.write_manifest()
    return root


def test_untrained_model_is_the_mean_face_and_shapes() -> None:
    cfg = LandmarkConfig(feature_dim=8, conv_channels=(8, 8), rnn_hidden=16, frame_embedding=8)
    model = SpeechToLandmarks(cfg)
    mean = torch.rand(68, 2)
    model.mean_face.copy_(mean)
    out = model(torch.randn(3, 10, 16, 8))
    assert out.shape == (3, 10, 68, 2)
    assert torch.equal(out, mean.expand_as(out))  # zero-initialised head: exactly the baseline
    lstm = SpeechToLandmarks(LandmarkConfig(feature_dim=8, rnn="lstm", bidirectional=True, rnn_hidden=16))
    assert lstm(torch.randn(2, 5, 16, 8)).shape == (2, 5, 68, 2)


def test_loss_and_errors_by_hand() -> None:
    target = torch.zeros(1, 3, 68, 2)
    pred = target.clone()
    pred[0, 1, 50, 0] = 0.1  # one mouth point off in one frame
    valid = torch.tensor([[True, True, True]])
    out = landmark_loss(pred, target, valid, mouth_weight=4.0, temporal_weight=0.5)
    w_mouth = 4.0 / ((48 + 4 * 20) / 68)  # weights are normalised to mean 1
    point = 0.01 * w_mouth / 68 / 3  # one squared error, mean over 68 points, 3 frames
    temporal = (0.01 + 0.01) / 68 / 2  # the error enters two differences, 2 differences in all
    assert out["point"].item() == pytest.approx(point, rel=1e-5)
    assert out["temporal"].item() == pytest.approx(temporal, rel=1e-5)
    assert out["loss"].item() == pytest.approx(point + 0.5 * temporal, rel=1e-5)
    # An invalid frame drops out of both terms.
    out2 = landmark_loss(pred, target, torch.tensor([[True, False, True]]), 4.0, 0.5)
    assert out2["loss"].item() == 0.0
    errs = landmark_errors(pred.numpy()[0], target.numpy()[0], np.ones(3, bool), crop_size=128)
    assert errs["mouth_lmd"] == pytest.approx(0.1 * 128 / 20 / 3, rel=1e-5)
    assert errs["landmark_l2"] == pytest.approx(0.1 * 128 / 68 / 3, rel=1e-5)


def test_windows_splits_and_fallback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_synthetic_store(tmp_path / "ds", n_clips=5, t=40)
    store = DatasetStore(root)
    parts = mdata.select_clips(store, "seen", seed=0)
    assert parts["test"] == ["syn_04"] and len(parts["val"]) == 1 and len(parts["train"]) == 3
    assert "hash split" in caplog.text
    assert mdata.select_clips(store, "seen", seed=0) == parts  # seeded: the same every time
    clips = mdata.load_clips(store, parts["train"])
    ds = mdata.WindowDataset(clips, length=16, stride=8)
    assert len(ds) == 3 * 4  # starts 0, 8, 16, 24 in a 40-frame clip
    item = ds[0]
    assert item["features"].shape == (16, 16, 8) and item["features"].dtype == torch.float32
    assert item["landmarks"].shape == (16, 68, 2)
    assert not item["valid"][5] and item["valid"][4]  # the frame without a face is masked
    assert torch.isfinite(item["landmarks"]).all()
    expected = load_template(128) / 128.0
    np.testing.assert_allclose(item["landmarks"][0, :48].numpy(), expected[:48], atol=1e-6)
    # Short clips give one padded window.
    short = mdata.WindowDataset(clips, length=64, stride=8)
    assert len(short) == 3 and not short[0]["valid"][40:].any()
    # Explicit val clips are used as they are.
    root2 = make_synthetic_store(tmp_path / "ds2", n_clips=3, splits=("train", "val", "test"))
    assert mdata.select_clips(DatasetStore(root2), "seen") == {"train": ["syn_00"], "val": ["syn_01"],
                                                                "test": ["syn_02"]}


def test_train_cli_writes_loadable_checkpoint(tmp_path: Path) -> None:
    from talkface.cli import app

    root = make_synthetic_store(tmp_path / "ds", n_clips=4, t=40)
    out = tmp_path / "runs" / "lm"
    result = CliRunner().invoke(app, ["train", "landmarks", "--data", str(root), "--out", str(out),
                                      "--max-steps", "3", "--batch-size", "4", "--window-len", "16",
                                      "--accelerator", "cpu", "--val-every", "3"])
    assert result.exit_code == 0, result.output
    assert "checkpoints" in result.output and "tensorboard" in result.output
    path = find_stage_checkpoint(tmp_path / "runs", "landmarks")
    model, config, mean = load_landmark_stage(path)
    assert config.feature_dim == 8 and config.window_len == 16 and config.feature_backend == "synthetic"
    ckpt = load_checkpoint(path)
    assert LandmarkConfig.from_dict(ckpt["config"]) == config  # config restored exactly
    assert ckpt["dataset"]["root"] == str(root.resolve())
    # The mean face is the training split's mean of aligned landmarks (unit coordinates).
    clips = mdata.load_clips(DatasetStore(root), mdata.select_clips(DatasetStore(root), "seen")["train"])
    frames = np.concatenate([c.landmarks[c.valid] for c in clips])
    np.testing.assert_allclose(mean, frames.mean(0), atol=1e-6)
    assert predict_landmarks(model, np.zeros((25, 16, 8), np.float32)).shape == (25, 68, 2)
    assert (tmp_path / "runs/lm/tensorboard").exists()


def test_learns_synthetic_mouth_from_features(tmp_path: Path) -> None:
    """On data where the mouth opening is a function of the speech window, a short training beats the
    mean-face baseline clearly (mouth LMD at least 30% lower after 150 steps)."""
    root = make_synthetic_store(tmp_path / "ds", n_clips=8, t=40, splits=("train",) * 6 + ("val", "test"))
    cfg = LandmarkConfig(conv_channels=(16, 16), frame_embedding=32, rnn_hidden=32, window_len=16,
                         dropout=0.0)
    stage = LandmarkStage(root, "seen", cfg)
    settings = TrainSettings(out_dir=tmp_path / "run", max_steps=150, batch_size=8, accelerator="cpu",
                             val_every=150, ckpt_every=150, lr=3e-3)
    result = run_training(stage, settings, quiet=True)
    val = result.last_validation
    assert val["mouth_lmd"] < 0.7 * val["baseline_mouth_lmd"], val


def test_overfits_a_real_batch(prepared_grid: Path) -> None:
    """Real GRID windows: 60 Adam steps on one batch of 4 windows cut the loss at least 5x."""
    torch.manual_seed(0)
    store = DatasetStore(prepared_grid)
    clips = mdata.load_clips(store, mdata.select_clips(store, "seen")["train"])
    ds = mdata.WindowDataset(clips, length=24, stride=24)
    batch = torch.utils.data.default_collate([ds[i] for i in range(0, 4 * 3, 3)])
    cfg = LandmarkConfig(feature_dim=clips[0].features.shape[2], dropout=0.0, conv_channels=(32, 32),
                         rnn_hidden=64, frame_embedding=64)
    model = SpeechToLandmarks(cfg)
    model.mean_face.copy_(torch.from_numpy(mdata.mean_face(clips)))
    fm, fs = mdata.feature_stats(clips)
    model.feature_mean.copy_(torch.from_numpy(fm))
    model.feature_std.copy_(torch.from_numpy(fs))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = landmark_loss(model(batch["features"]), batch["landmarks"], batch["valid"], 4.0, 1.0)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])


def test_learns_real_mouth_motion_on_grid_s1(prepared_grid_all: Path, tmp_path: Path) -> None:
    """Learnability on real data: a short CPU training on the GRID s1 fixtures (seen split: 101 train,
    12 val clips, logmel) beats the mean-face baseline (mouth held still) on validation mouth LMD.

    Measured (2-core CPU, 2026-11-21, 300 steps, batch 16, seed 0): 1.003 px vs 1.290 px baseline
    (22% below). The bound asks for at least 15% below the baseline.
    """
    from talkface.models.speech_to_landmarks import LandmarkConfig, LandmarkStage

    torch.set_num_threads(2)
    settings = TrainSettings(out_dir=tmp_path / "lm", max_steps=300, batch_size=16, devices="1",
                             accelerator="cpu", seed=0, ckpt_every=1000, log_every=100, val_every=300,
                             image_every=10_000, lr=1e-3)
    result = run_training(LandmarkStage(prepared_grid_all, "seen", LandmarkConfig()), settings, quiet=True)
    val = result.last_validation
    print(f"GRID s1 val mouth LMD {val['mouth_lmd']:.3f} px vs mean-face baseline "
          f"{val['baseline_mouth_lmd']:.3f} px")
    assert val["mouth_lmd"] < 0.85 * val["baseline_mouth_lmd"]
