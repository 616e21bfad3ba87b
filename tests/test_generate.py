"""`talkface generate` end to end on CPU with briefly trained (2-step) checkpoints of all three stages."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.io import wavfile
from typer.testing import CliRunner

from talkface.models.texture import TextureConfig

torch.set_num_threads(1)

TINY = dict(gen_widths=(8, 16, 16, 32, 32), gen_res_blocks=1, disc_widths=(8, 16, 32, 32))
AUDIO_CORRELATION_MIN = 0.99  # decoded AAC vs input, after aligning the encoder delay
MAX_AAC_LAG = 4096  # samples at 16 kHz searched for that delay


@pytest.fixture(scope="module")
def runs(prepared_grid, tmp_path_factory):
    """runs/{lm,blink,tex}: each stage trained for 2 steps with models-motion's loop and checkpoints."""
    from talkface.models.blinks import BlinkStage
    from talkface.models.fabric_loop import TrainSettings, run_training
    from talkface.models.speech_to_landmarks import LandmarkStage
    from talkface.models.texture_train import TextureStage

    root = tmp_path_factory.mktemp("runs")
    stages = {"lm": LandmarkStage(prepared_grid, "seen"), "blink": BlinkStage(prepared_grid, "seen"),
              "tex": TextureStage(prepared_grid, "seen", TextureConfig(val_max_samples=4, **TINY))}
    for name, stage in stages.items():
        settings = TrainSettings(out_dir=root / name, max_steps=2, batch_size=2, accelerator="cpu",
                                 ckpt_every=2, val_every=2, image_every=2, lr=2e-4)
        run_training(stage, settings, quiet=True)
    return root


def _app():
    from talkface.cli import app

    return app


def _correlation_after_alignment(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Pearson correlation after shifting by the lag (|lag| <= MAX_AAC_LAG) of peak cross-correlation."""
    from scipy.signal import correlate, correlation_lags

    xc = correlate(decoded, reference, mode="full", method="fft")
    lags = correlation_lags(len(decoded), len(reference), mode="full")
    keep = np.abs(lags) <= MAX_AAC_LAG
    lag = int(lags[keep][np.argmax(xc[keep])])
    a = reference[max(0, -lag):]
    b = decoded[max(0, lag):]
    m = min(len(a), len(b))
    return float(np.corrcoef(a[:m], b[:m])[0, 1])


def test_frame_count_rule_is_ceil_of_duration():
    from talkface.models.generate import n_frames_for

    assert n_frames_for(48000) == 75  # 3.000 s
    assert n_frames_for(48001) == 76  # a sample more needs one more frame
    assert n_frames_for(20800) == 33  # 1.3 s -> 32.5 -> 33
    assert n_frames_for(1) == 1


def test_texture_checkpoint_holds_config_and_validation(runs):
    import json

    from talkface.models.fabric_loop import load_checkpoint
    from talkface.models.texture_train import load_texture_stage

    ckpt = load_checkpoint(runs / "tex" / "checkpoints" / "last.pt")
    assert ckpt["stage"] == "texture" and ckpt["step"] == 2
    config = TextureConfig.from_dict(ckpt["config"])
    assert config.gen_widths == TINY["gen_widths"] and config.image_size == 128
    gen, loaded, header = load_texture_stage(runs / "tex" / "checkpoints" / "last.pt")
    assert loaded == config and header["step"] == 2
    lines = [json.loads(x) for x in (runs / "tex" / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 < lines[-1]["l1"] < 1.0 and -1.0 <= lines[-1]["ssim"] <= 1.0
    # the copy-the-identity baseline is reported beside it; identity != target frame, so its L1 > 0
    assert 0.0 < lines[-1]["l1_identity_copy"] < 1.0 and lines[-1]["ssim_identity_copy"] < 1.0


def test_generate_one_video_frame_count_and_audio(runs, grid_root, tmp_path):
    from talkface.preprocess import media

    clip = sorted((grid_root / "s1").glob("*.mpg"))[3]
    # input audio: 1.3 s at 22.05 kHz (generate must accept any rate), as 16-bit wav
    audio22 = media.read_audio(clip, sr=22050)[: int(1.3 * 22050)]
    wav = tmp_path / "speech.wav"
    wavfile.write(wav, 22050, (audio22 * 32767).astype(np.int16))
    frame = next(media.iter_frames(clip))
    png = tmp_path / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "talking.mp4"

    result = CliRunner().invoke(_app(), ["generate", "--audio", str(wav), "--identity", str(png),
                                         "--checkpoints", str(runs), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    reference = media.read_audio(wav, 16000)
    video = media.read_video(out)
    assert video.shape[1:] == (128, 128, 3)
    assert len(video) == math.ceil(len(reference) / 16000 * 25) == 33
    decoded = media.read_audio(out, 16000)
    assert abs(len(decoded) - len(reference)) < 2048  # AAC frames of 1024 samples at most pad it
    assert _correlation_after_alignment(reference, decoded) > AUDIO_CORRELATION_MIN


def test_generate_split_writes_one_video_per_clip_and_resumes(runs, prepared_grid, tmp_path):
    import json

    from talkface.models.data import select_clips
    from talkface.preprocess import media
    from talkface.preprocess.store import DatasetStore

    store = DatasetStore(prepared_grid)
    parts = select_clips(store, "seen")
    part = "test" if parts["test"] else "val"
    out = tmp_path / "ours"
    args = ["generate", "--data", str(prepared_grid), "--split", part, "--checkpoints", str(runs),
            "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in out.glob("*.mp4")) == parts[part]
    manifest = store.read_manifest().set_index("clip_id")
    for clip_id in parts[part]:
        assert len(media.read_video(out / f"{clip_id}.mp4")) == int(manifest.at[clip_id, "n_frames"])
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 0, again.output
    summary = json.loads((out / "generation.json").read_text())
    assert summary["skipped_existing"] == parts[part] and summary["generated"] == [] and not summary["failed"]
    assert len(summary["checkpoints"]["texture"]["sha256"]) == 64


def test_identity_image_without_face_gives_clear_error(runs, tmp_path):
    from talkface.models.generate import align_identity
    from talkface.preprocess.landmarks.base import NoFaceError

    rng = np.random.default_rng(0)
    blank = np.full((200, 200, 3), 128, np.uint8)
    blank[50:150, 50:150] = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face found in the identity image"):
        align_identity(blank, 128)
    png = tmp_path / "noface.png"
    cv2.imwrite(str(png), blank)
    wav = tmp_path / "a.wav"
    wavfile.write(wav, 16000, (0.1 * np.sin(np.arange(16000) / 10) * 32767).astype(np.int16))
    result = CliRunner().invoke(_app(), ["generate", "--audio", str(wav), "--identity", str(png),
                                         "--checkpoints", str(runs), "--out", str(tmp_path / "x.mp4"),
                                         "--device", "cpu"])
    assert result.exit_code == 2
    assert "no face found in the identity image" in result.output
    assert not (tmp_path / "x.mp4").exists()
