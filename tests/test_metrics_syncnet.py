"""SyncNet LSE-C / LSE-D: offset arithmetic against numpy, weight loading, crops and 75-frame clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkface.evaluate.metrics import get_metric, lse
from talkface.evaluate.metrics.base import ClipSample, MetricUnavailable
from talkface.evaluate.metrics.syncnet import (
    SyncNet,
    face_crops,
    lse_from_embeddings,
    mfcc_13,
    offset_distances,
)

torch.set_num_threads(1)


def _numpy_offsets(video: np.ndarray, audio: np.ndarray, vshift: int) -> np.ndarray:
    """Mean distance per offset, written directly: video i vs audio i + j - vshift, zeros past the ends."""
    n, d = video.shape
    means = []
    for j in range(2 * vshift + 1):
        total = 0.0
        for i in range(n):
            k = i + j - vshift
            other = audio[k] if 0 <= k < n else np.zeros(d)
            total += np.linalg.norm(video[i] - other + 1e-6)  # torch pairwise_distance adds eps=1e-6
        means.append(total / n)
    return np.array(means)


@pytest.mark.parametrize("shift", [-4, 0, 3])
def test_offset_arithmetic_matches_numpy(shift):
    rng = np.random.default_rng(10 + shift)
    n, d, vshift = 40, 16, 15
    video = rng.normal(0, 1, (n, d)).astype(np.float32)
    audio = rng.normal(0, 1, (n, d)).astype(np.float32)
    for i in range(n):  # audio window i + shift carries video window i's content
        if 0 <= i + shift < n:
            audio[i + shift] = video[i] + rng.normal(0, 0.01, d)
    ref = _numpy_offsets(video.astype(np.float64), audio.astype(np.float64), vshift)
    out = lse_from_embeddings(video, audio, vshift)
    np.testing.assert_allclose(out["mean_distance_per_offset"], ref, rtol=1e-5)
    assert out["lse_d"] == pytest.approx(ref.min(), rel=1e-5)
    assert out["lse_c"] == pytest.approx(np.median(ref) - ref.min(), rel=1e-5)
    assert out["offset"] == -shift  # syncnet_python's sign: vshift - argmin
    assert offset_distances(video, audio, vshift).shape == (n, 2 * vshift + 1)


def _save_random_syncnet(path, prefix: str = "__S__.", drop_bn_counter: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    model = SyncNet()
    for m in model.modules():  # non-trivial BN statistics so a wrong mapping shows
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {prefix + k: v for k, v in model.state_dict().items()
             if not (drop_bn_counter and k.endswith("num_batches_tracked"))}
    torch.save(state, path)
    return model.eval()


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    model = _save_random_syncnet(path)
    return path, model


def test_weights_load_by_key_and_shapes_on_a_short_clip(syncnet_file):
    path, original = syncnet_file
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, 8 * 640).astype(np.float32)
    out = lse(frames, audio, syncnet_model=path)
    assert out["n_windows"] == 3 and out["per_frame_distance"].shape == (3,)
    assert out["mean_distance_per_offset"].shape == (31,)
    assert out["crop"] == "full-frame"
    # the loaded network reproduces the saved one (every key mapped, BN statistics included)
    from talkface.evaluate.metrics.syncnet import load_syncnet

    loaded = load_syncnet(path)
    x = torch.from_numpy(rng.normal(0, 50, (1, 3, 5, 224, 224)).astype(np.float32))
    a = torch.from_numpy(rng.normal(0, 5, (2, 1, 13, 20)).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(loaded.forward_lip(x), original.forward_lip(x))
        torch.testing.assert_close(loaded.forward_aud(a), original.forward_aud(a))
        assert loaded.forward_aud(a).shape == (2, 1024)


def test_weight_errors_name_file_key_and_shape(tmp_path):
    with pytest.raises(MetricUnavailable, match="syncnet_v2.model"):
        get_metric("lse_d", syncnet_model=str(tmp_path / "absent.model"))
    state = SyncNet().state_dict()
    state["netcnnlip.0.weight"] = torch.zeros(96, 1, 5, 7, 7)  # the grayscale paper variant
    torch.save(state, tmp_path / "gray.model")
    with pytest.raises(MetricUnavailable, match=r"'netcnnlip.0.weight' has shape \(96, 1, 5, 7, 7\)"):
        get_metric("lse_c", syncnet_model=str(tmp_path / "gray.model"))
    del state["netfcaud.3.bias"]
    state["netcnnlip.0.weight"] = torch.zeros(96, 3, 5, 7, 7)
    torch.save(state, tmp_path / "partial.model")
    with pytest.raises(MetricUnavailable, match="lacks key 'netfcaud.3.bias'"):
        get_metric("lse_c", syncnet_model=str(tmp_path / "partial.model"))


def test_face_crop_follows_the_run_pipeline_rule():
    import cv2

    yy, xx = np.mgrid[0:160, 0:160]
    frame = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    pts = np.zeros((68, 2))
    pts[:, 0] = np.linspace(40, 80, 68)
    pts[:, 1] = np.linspace(30, 70, 68)  # box: centre (60, 50), half size 20
    crops = face_crops(np.stack([frame] * 3), np.stack([pts] * 3))
    # rows y - s .. y + 1.8 s = 30..86, columns x - 1.4 s .. x + 1.4 s = 32..88, BGR, resized to 224
    expected = cv2.resize(np.ascontiguousarray(frame[30:86, 32:88, ::-1]), (224, 224))
    assert crops.shape == (3, 224, 224, 3)
    np.testing.assert_array_equal(crops[0], expected)


def test_mfcc_rate_is_100hz():
    assert mfcc_13(np.zeros(48000, np.float32) + 1e-3).shape == (13, 299)


def test_75_frame_clip_scores_with_both_metrics(syncnet_file, monkeypatch):
    """A whole GRID-length clip (75 frames, 3 s): 70 windows, 31 offsets, one network pass shared by
    LSE-D and LSE-C. The visual stream is swapped for a cheap stand-in to keep the test fast (the real
    stream is exercised above); windowing, crops, MFCC and offsets are the real code."""
    path, _ = syncnet_file
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (75, 96, 96, 3), dtype=np.uint8)
    lms = np.tile(np.stack([np.linspace(30, 66, 68), np.linspace(25, 70, 68)], 1), (75, 1, 1))
    lms[10] = np.nan  # a frame without a face is bridged from its neighbours
    audio = rng.normal(0, 0.1, 48000).astype(np.float32)
    d_metric = get_metric("lse_d", syncnet_model=str(path))
    c_metric = get_metric("lse_c", syncnet_model=str(path))
    assert d_metric.scorer is c_metric.scorer
    calls = {"lip": 0}
    proj = torch.from_numpy(rng.normal(0, 1, (5, 1024)).astype(np.float32))

    def cheap_lip(x: torch.Tensor) -> torch.Tensor:
        calls["lip"] += 1
        assert x.shape[1:] == (3, 5, 224, 224)
        return x.mean((1, 3, 4)) / 255.0 @ proj

    monkeypatch.setattr(d_metric.scorer.model, "forward_lip", cheap_lip)
    sample = ClipSample("grid_like", frames, 25.0, landmarks=lms, audio=audio)
    d, c = d_metric(sample), c_metric(sample)
    assert d.error is None and c.error is None, (d.error, c.error)
    assert d.details["n_windows"] == 70 and len(d.details["mean_distance_per_offset"]) == 31
    assert d.per_frame.shape == (70,)
    assert calls["lip"] == 5  # 70 windows in batches of 16, run once for both metrics
    means = np.array(d.details["mean_distance_per_offset"])
    assert d.value == pytest.approx(means.min(), abs=1e-4)
    assert c.value == pytest.approx(np.median(means) - means.min(), abs=1e-4) and c.value >= 0
    assert -15 <= d.details["offset"] <= 15
    definition = d_metric.definition()
    assert definition["variant"] == "syncnet-v2-vshift15-crop-landmarks"
    assert len(definition["weights_sha256"]) == 64 and definition["higher_is_better"] is False
    assert c_metric.definition()["higher_is_better"] is True
    short = c_metric(ClipSample("short", frames[:4], 25.0, audio=audio[:2560]))
    assert np.isnan(short.value) and "too short" in short.error
