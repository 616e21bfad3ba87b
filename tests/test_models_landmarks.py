"""Speech -> landmarks: shapes, loss by hand, data windows and splits, overfitting real data, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from talkface.core.alignment import load_template
from talkface.models.speech_to_landmarks import (
    LandmarkConfig,
    SpeechToLandmarks,
    augment_voice,
    landmark_errors,
    landmark_loss,
    load_landmark_stage,
    predict_landmarks,
    utterance_normalised,
    warp_feature_axis,
    with_gain,
)
from talkface.store.checkpoints import find_stage, load_checkpoint
from talkface.store.dataset import Dataset, DatasetError
from talkface.store.dataset_writer import DatasetStore
from talkface.train import data as mdata
from talkface.train.landmarks import LandmarkStage, fit_motion_gain, lmd_mouth_centroid_mean
from talkface.train.loop import TrainSettings, run_training

torch.set_num_threads(1)


def make_synthetic_store(root: Path, n_clips: int = 6, t: int = 40, d: int = 8, splits: tuple[str, ...] = (),
                         seed: int = 0, protocol: str = "seen") -> Path:
    """A dataset (protocol ``protocol`` only) whose mouth opening is the centre frame's first feature
    (learnable from speech)."""
    rng = np.random.default_rng(seed)
    store = DatasetStore(root)
    store.claim({"corpus": "synthetic", "crop_size": 128, "fps": 25.0, "feature_backend": "synthetic"})
    parts = {}
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
        parts[cid] = splits[i] if splits else ("train" if i < n_clips - 1 else "test")
        store.write_row({"clip_id": cid, "corpus": "synthetic", "speaker": "p1", "n_frames": t, "fps": 25.0,
                         "status": "ok", "crop_size": 128, "feature_backend": "synthetic"})
    store.add_protocol(protocol, parts)
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
    assert errs["point_error_mouth"] == pytest.approx(0.1 * 128 / 20 / 3, rel=1e-5)
    assert errs["point_error_face"] == pytest.approx(0.1 * 128 / 68 / 3, rel=1e-5)
    # The metric lmd_mouth:centroid-mean centres each mouth first: a mouth shifted as a whole costs
    # nothing there, but its full distance in point_error_mouth.
    shifted = target.numpy()[0].copy()
    shifted[:, 48:68] += 0.05
    ones = np.ones(3, bool)
    assert landmark_errors(shifted, target.numpy()[0], ones, 128)["point_error_mouth"] == pytest.approx(
        np.hypot(0.05, 0.05) * 128, rel=1e-5)
    assert lmd_mouth_centroid_mean([shifted], [target.numpy()[0]], [ones], 128) == pytest.approx(0, abs=1e-9)


def test_mouth_opening_loss_by_hand() -> None:
    from talkface.models.speech_to_landmarks import OPENING_PAIRS, mouth_openings

    target = torch.zeros(1, 2, 68, 2)
    target[..., 57, 1] = 0.03  # outer lower lip point 57 lies 0.03 below 51: opening 51-57 is 0.03
    pred = target.clone()
    pred[0, 0, 57, 1] = 0.05  # frame 0 opens 0.02 too wide
    pred[0, 1, 48:68] += 0.2  # frame 1: the whole mouth shifted, openings unchanged
    assert OPENING_PAIRS[1] == (51, 57)
    assert torch.allclose(mouth_openings(target)[0, 0], torch.tensor([0, 0.03, 0, 0, 0, 0]))
    valid = torch.tensor([[True, True]])
    out = landmark_loss(pred, target, valid, 4.0, 0.0, opening_weight=3.0)
    assert out["opening"].item() == pytest.approx(0.02**2 / 6 / 2, rel=1e-5)  # one of 6 pairs, 2 frames
    assert out["loss"].item() == pytest.approx(out["point"].item() + 3.0 * out["opening"].item(), rel=1e-6)
    assert "opening" not in landmark_loss(pred, target, valid, 4.0, 0.0)


def test_windows_splits_and_fallback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_synthetic_store(tmp_path / "ds", n_clips=5, t=40)
    dataset = Dataset.open(root)
    parts = mdata.training_parts(dataset, None, seed=0)
    assert parts.protocol == "seen"
    assert parts.test == ["syn_04"] and len(parts.val) == 1 and len(parts.train) == 3
    assert "hash split" in caplog.text
    assert mdata.training_parts(dataset, "seen", seed=0) == parts  # seeded: the same every time
    with pytest.raises(DatasetError, match=r"no split protocol 'speaker-independent' \(it holds: seen\)"):
        mdata.training_parts(dataset, "speaker-independent", seed=0)
    clips = mdata.load_clips(dataset, parts.train)
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
    parts2 = mdata.training_parts(Dataset.open(root2), None, seed=0)
    assert parts2.as_dict() == {"train": ["syn_00"], "val": ["syn_01"], "test": ["syn_02"]}
    # A resumed run keeps the protocol it was trained on; asking for another one is refused.
    resume = {"dataset": {"protocol": "seen"}}
    assert mdata.training_parts(Dataset.open(root2), None, 0, resume).protocol == "seen"
    with pytest.raises(DatasetError, match="trained on protocol 'seen'"):
        mdata.training_parts(Dataset.open(root2), "other", 0, resume)


def test_train_cli_writes_loadable_checkpoint(tmp_path: Path) -> None:
    from talkface.cli import app

    root = make_synthetic_store(tmp_path / "ds", n_clips=4, t=40)
    out = tmp_path / "runs" / "lm"
    result = CliRunner().invoke(app, ["train", "landmarks", "--data", str(root), "--out", str(out),
                                      "--max-steps", "3", "--batch-size", "4", "--window-len", "16",
                                      "--accelerator", "cpu", "--val-every", "3"])
    assert result.exit_code == 0, result.output
    assert "checkpoints" in result.output and "tensorboard" in result.output
    path = find_stage(tmp_path / "runs", "landmarks").weights_path()
    assert path == out / "checkpoints" / "last.pt"  # the landmark stage selects no best.pt
    model, config, mean = load_landmark_stage(path)
    assert config.feature_dim == 8 and config.window_len == 16 and config.feature_backend == "synthetic"
    ckpt = load_checkpoint(path)
    assert LandmarkConfig.from_dict(ckpt["config"]) == config  # config restored exactly
    assert ckpt["dataset"]["root"] == str(root.resolve()) and ckpt["dataset"]["protocol"] == "seen"
    assert ckpt["dataset"]["info"]["corpus"] == "synthetic"
    # The mean face is the training part's mean of aligned landmarks (unit coordinates).
    dataset = Dataset.open(root)
    clips = mdata.load_clips(dataset, mdata.training_parts(dataset, None, 0).train)
    frames = np.concatenate([c.landmarks[c.valid] for c in clips])
    np.testing.assert_allclose(mean, frames.mean(0), atol=1e-6)
    assert predict_landmarks(model, np.zeros((25, 16, 8), np.float32)).shape == (25, 68, 2)
    assert (tmp_path / "runs/lm/tensorboard").exists()


def test_utterance_normalised_by_hand_and_blind_to_a_voice_constant() -> None:
    f = np.zeros((2, 2, 2), np.float32)
    f[:, :, 0] = [[1, 3], [5, 7]]  # mean 4, std sqrt(5)
    f[:, :, 1] = 2.0  # constant: std floored at 1e-3, centred to 0
    got = utterance_normalised(f)
    np.testing.assert_allclose(got[:, :, 0], (np.array([[1, 3], [5, 7]]) - 4) / np.sqrt(5), rtol=1e-6)
    np.testing.assert_array_equal(got[:, :, 1], 0.0)
    x = np.random.default_rng(0).normal(size=(30, 16, 5)).astype(np.float32)
    scale, shift = np.float32([0.5, 2, 3, 1, 4]), np.float32([-1, 0, 7, 2, 3])
    np.testing.assert_allclose(utterance_normalised(x * scale + shift), utterance_normalised(x), atol=1e-5)


@pytest.mark.parametrize("norm", ["utterance", "dataset"])
def test_feature_norm_is_trained_saved_and_applied_at_prediction(tmp_path: Path, norm: str) -> None:
    """--feature-norm utterance: the checkpoint says so and its predictions ignore a per-dimension
    gain and offset of the speech features (a different voice level or channel); the dataset norm does not."""
    from talkface.cli import app

    root = make_synthetic_store(tmp_path / "ds", n_clips=4, t=40)
    out = tmp_path / "runs" / "lm"
    result = CliRunner().invoke(app, ["train", "landmarks", "--data", str(root), "--out", str(out),
                                      "--max-steps", "3", "--batch-size", "4", "--window-len", "16",
                                      "--accelerator", "cpu", "--val-every", "3", "--feature-norm", norm])
    assert result.exit_code == 0, result.output
    model, config, _ = load_landmark_stage(find_stage(tmp_path / "runs", "landmarks").weights_path())
    assert config.feature_norm == norm
    x = np.random.default_rng(1).normal(size=(25, 16, 8)).astype(np.float32)
    a, b = predict_landmarks(model, x), predict_landmarks(model, 3.0 * x + 2.0)
    if norm == "utterance":
        np.testing.assert_allclose(a, b, atol=1e-5)
    else:
        assert np.abs(a - b).max() > 1e-4


def test_voice_warp_and_masks_by_hand() -> None:
    ramp = np.arange(5, dtype=np.float32)[None]  # bin d holds d
    np.testing.assert_allclose(warp_feature_axis(ramp, 2.0), [[0, 0.5, 1, 1.5, 2]])  # formants move up
    np.testing.assert_allclose(warp_feature_axis(ramp, 0.5), [[0, 2, 4, 4, 4]])  # clamped at the top bin
    np.testing.assert_allclose(warp_feature_axis(ramp, 1.0), ramp)
    x = np.random.default_rng(0).normal(size=(32, 16, 40)).astype(np.float32) + 5.0  # no natural zeros
    rng = np.random.default_rng(1)
    for _ in range(20):
        out = augment_voice(x, rng, (1.0, 1.0), 2)
        zeroed = np.flatnonzero((out == 0).all(axis=(0, 1)))
        assert len(zeroed) <= 2 * 8  # two masks, each at most a fifth of 40 bins
        kept = np.setdiff1d(np.arange(40), zeroed)
        np.testing.assert_array_equal(out[..., kept], x[..., kept])  # the rest untouched, no warp
    assert not np.array_equal(augment_voice(x, np.random.default_rng(2), (0.8, 1.25), 0), x)


def test_motion_gain_fit_by_hand() -> None:
    """A prediction that moves the mouth twice as far as the real one is exact at gain 0.5, one that
    moves it as far is exact at 1 (ties go to the larger gain), and frames without a face are ignored."""
    mean = load_template(128) / 128.0
    rng = np.random.default_rng(0)
    targets, doubled, same, valids = [], [], [], []
    for _ in range(3):
        t = 30
        disp = np.zeros((t, 68, 2), np.float32)
        disp[:, 57:60, 1] = rng.uniform(0, 0.05, size=(t, 1))  # the lower lip opens and closes
        target = mean + disp
        valid = np.ones(t, bool)
        valid[4] = False
        bad = target.copy()
        bad[4] = 9.0  # an invalid frame far away: counted, it would move the fit
        targets.append(bad), doubled.append(mean + 2 * disp), same.append(target), valids.append(valid)
    gain, err = fit_motion_gain(doubled, targets, valids, mean, 128)
    assert gain == 0.5 and err == pytest.approx(0.0, abs=1e-4)
    gain, err = fit_motion_gain(same, targets, valids, mean, 128)
    assert gain == 1.0 and err == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(with_gain(doubled[0], mean, 0.5), same[0], atol=1e-6)


def test_motion_gain_fitted_at_validation_saved_and_applied(tmp_path: Path) -> None:
    """Training fits the gain on the held-out clips and saves it; prediction scales the displacements
    from the mean face by it; a checkpoint made before the gain existed loads with gain 1."""
    root = make_synthetic_store(tmp_path / "ds", n_clips=6, t=40, splits=("train",) * 4 + ("val", "test"))
    stage = LandmarkStage(root, "seen", LandmarkConfig(window_len=16))
    run_training(stage, TrainSettings(out_dir=tmp_path / "lm", max_steps=4, batch_size=4, seed=0,
                                      accelerator="cpu", val_every=4), quiet=True)
    ckpt = load_checkpoint(tmp_path / "lm" / "checkpoints" / "last.pt")
    metrics = [json.loads(line) for line in (tmp_path / "lm" / "metrics.jsonl").read_text().splitlines()]
    fitted = [m["motion_gain"] for m in metrics if "motion_gain" in m]
    assert fitted and fitted[-1] in {round(g, 2) for g in np.arange(0.4, 1.21, 0.05)}
    model, _, mean = load_landmark_stage(tmp_path / "lm" / "checkpoints" / "last.pt")
    assert float(model.motion_gain) == pytest.approx(fitted[-1])
    x = np.random.default_rng(2).normal(size=(25, 16, 8)).astype(np.float32)
    with torch.no_grad():
        raw = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(predict_landmarks(model, x), mean + fitted[-1] * (raw - mean), atol=1e-4)
    state = dict(ckpt["models"]["landmarks"])
    del state["motion_gain"]
    old = SpeechToLandmarks(model.config)
    old.load_state_dict(state)
    assert float(old.motion_gain) == 1.0
    # a config saved before --feature-norm existed was trained on the dataset's standardisation only
    older = LandmarkConfig.from_dict({})
    assert older.feature_norm == "dataset" and older.freq_masks == 0 and older.voice_warp == (1.0, 1.0)
    assert LandmarkConfig().feature_norm == "utterance" and LandmarkConfig().freq_masks == 2


def test_train_cli_protocols(tmp_path: Path) -> None:
    """A protocol the dataset lacks: exit 2 with one sentence naming the protocols it holds, no
    traceback, nothing trained. The deprecated --split still means the protocol, with a note."""
    from talkface.cli import app

    root = make_synthetic_store(tmp_path / "ds", n_clips=4, t=40, protocol="speaker-independent")
    base = ["train", "landmarks", "--data", str(root), "--max-steps", "2", "--batch-size", "4",
            "--window-len", "16", "--accelerator", "cpu"]
    for flag in ("--protocol", "--split"):
        out = tmp_path / f"lm{flag}"
        result = CliRunner().invoke(app, [*base, "--out", str(out), flag, "seen"])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and not isinstance(result.exception, ValueError)
        text = " ".join(result.output.split())
        assert "holds no split protocol 'seen' (it holds: speaker-independent)" in text, text
        assert not (out / "checkpoints").exists()
    out = tmp_path / "lm"
    result = CliRunner().invoke(app, [*base, "--out", str(out), "--split", "speaker-independent"])
    assert result.exit_code == 0, result.output
    assert "--split is deprecated" in result.output
    assert load_checkpoint(out / "checkpoints" / "last.pt")["dataset"]["protocol"] == "speaker-independent"


def test_learns_synthetic_mouth_from_features(tmp_path: Path) -> None:
    """On data where the mouth opening is a function of the speech window, a short training beats the
    mean-face baseline clearly (mouth LMD at least 30% lower after 80 steps).

    Measured (seed 0, CPU): both ratios to the baseline are 1.8 and 1.3 at step 10, 0.63 and 0.58 at 40,
    0.53 and 0.51 at 80, and stay near 0.51 up to 150 steps."""
    root = make_synthetic_store(tmp_path / "ds", n_clips=8, t=40, splits=("train",) * 6 + ("val", "test"))
    cfg = LandmarkConfig(conv_channels=(16, 16), frame_embedding=32, rnn_hidden=32, window_len=16,
                         dropout=0.0)
    stage = LandmarkStage(root, None, cfg)
    settings = TrainSettings(out_dir=tmp_path / "run", max_steps=80, batch_size=8, accelerator="cpu",
                             val_every=80, ckpt_every=80, lr=3e-3)
    result = run_training(stage, settings, quiet=True)
    val = result.last_validation
    assert val["point_error_mouth"] < 0.7 * val["baseline_point_error_mouth"], val
    assert val["lmd_mouth_centroid_mean"] < 0.7 * val["baseline_lmd_mouth_centroid_mean"], val


def test_overfits_a_real_batch(prepared_grid: Path) -> None:
    """Real GRID windows: 60 Adam steps on one batch of 4 windows cut the loss at least 5x."""
    torch.manual_seed(0)
    dataset = Dataset.open(prepared_grid)
    clips = mdata.load_clips(dataset, mdata.training_parts(dataset, None, 0).train)
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

    Measured (2-core CPU, 2026-12-02, batch 16, seed 0, the defaults then: dataset standardisation, no
    voice augmentation): 1.004 px vs 1.290 px baseline after 100 steps (22% below); validating every 25
    steps of a 300-step run gave 0.90 at 25 steps, 0.78 at 100 and 0.79-0.84 from 125 to 300.
    With today's defaults (utterance standardisation, voice warp and frequency masks, 2026-12-07) it learns
    more slowly: 1.117 vs 1.295 px at 100 steps (0.86, this check fails there), 1.051 at 200 (0.81). The
    bound asks for at least 15% below the baseline (0.85) after 200 steps.
    """
    from talkface.models.speech_to_landmarks import LandmarkConfig
    from talkface.train.landmarks import LandmarkStage

    torch.set_num_threads(2)
    settings = TrainSettings(out_dir=tmp_path / "lm", max_steps=200, batch_size=16, devices="1",
                             accelerator="cpu", seed=0, ckpt_every=1000, log_every=200, val_every=200,
                             image_every=10_000, lr=1e-3)
    result = run_training(LandmarkStage(prepared_grid_all, "seen", LandmarkConfig()), settings, quiet=True)
    val = result.last_validation
    print(f"GRID s1 val mouth point error {val['point_error_mouth']:.3f} px vs mean-face baseline "
          f"{val['baseline_point_error_mouth']:.3f} px; lmd_mouth:centroid-mean "
          f"{val['lmd_mouth_centroid_mean']:.3f} vs {val['baseline_lmd_mouth_centroid_mean']:.3f} px")
    assert val["point_error_mouth"] < 0.85 * val["baseline_point_error_mouth"]


def test_prepare_then_train_on_the_stores_protocols(grid_root: Path, tmp_path: Path) -> None:
    """The issue's path: `prepare grid X --out D` (default protocol speaker-independent: one speaker
    gives no training clips) then `train landmarks --data D --max-steps 10` exits 2 with one sentence
    naming what D holds, never a traceback; once `--protocol seen` is added to D it trains on it and the
    checkpoint records that protocol."""
    from talkface.cli import app

    runner = CliRunner()
    data = tmp_path / "D"
    prepare = ["prepare", "grid", str(grid_root), "--out", str(data), "--speakers", "s1", "--limit", "4"]
    assert runner.invoke(app, prepare).exit_code == 0
    train = ["train", "landmarks", "--data", str(data), "--max-steps", "10", "--batch-size", "2",
             "--window-len", "16", "--accelerator", "cpu"]
    result = runner.invoke(app, [*train, "--out", str(tmp_path / "lm0")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), text  # no traceback
    assert "protocol 'speaker-independent' has no usable 'train' clips" in text, text
    assert "the only protocol the dataset holds" in text and "--protocol seen" in text, text
    result = runner.invoke(app, [*train, "--protocol", "seen", "--out", str(tmp_path / "lm1")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "no split protocol 'seen' (it holds: speaker-independent)" in text, text
    assert runner.invoke(app, [*prepare, "--protocol", "seen"]).exit_code == 0
    out = tmp_path / "lm2"
    result = runner.invoke(app, [*train, "--protocol", "seen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = find_stage(tmp_path, "landmarks")
    assert run.out_dir == out and run.meta.protocol == "seen" and run.meta.step == 10
    # Without --protocol the store's own (default) protocol is used: still speaker-independent.
    result = runner.invoke(app, [*train, "--out", str(tmp_path / "lm3")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "train on another protocol it holds (--protocol seen)" in text, text
