"""`talkface generate` end to end on CPU with briefly trained (2-step) checkpoints of all three stages,
and the faults a new user hit: identity images too small or not images, audio that is not audio, a
dataset whose protocol holds only test clips, provenance naming the file that was really loaded."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest
import torch
from generation_runs import TINY, one_line, trained_runs, usable_part
from scipy.io import wavfile
from typer.testing import CliRunner

torch.set_num_threads(1)

AUDIO_CORRELATION_MIN = 0.99  # decoded AAC vs input, after aligning the encoder delay
MAX_AAC_LAG = 4096  # samples at 16 kHz searched for that delay


@pytest.fixture(scope="module")
def runs(prepared_grid, tmp_path_factory):
    return trained_runs(prepared_grid, tmp_path_factory)


def _app():
    from talkface.cli import app

    return app


def _invoke(args: list[str]):
    return CliRunner().invoke(_app(), args)


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


def _speech_wav(path, seconds: float = 1.0) -> None:
    t = np.arange(int(16000 * seconds))
    wavfile.write(path, 16000, (0.1 * np.sin(t / 10) * 32767).astype(np.int16))


def test_frame_count_rule_is_ceil_of_duration():
    from talkface.generation.generator import n_frames_for

    assert n_frames_for(48000) == 75  # 3.000 s
    assert n_frames_for(48001) == 76  # a sample more needs one more frame
    assert n_frames_for(20800) == 33  # 1.3 s -> 32.5 -> 33
    assert n_frames_for(1) == 1


def test_texture_checkpoint_holds_config_and_validation(runs):
    from talkface.models.texture import TextureConfig, texture_generator_from_state
    from talkface.store.checkpoints import find_stage

    ckpt = find_stage(runs, "texture").load()
    assert ckpt.stage == "texture" and ckpt.step == 2
    config = TextureConfig.from_dict(ckpt.state["config"])
    assert config.gen_widths == TINY["gen_widths"] and config.image_size == 128
    _, loaded, header = texture_generator_from_state(ckpt.state)
    assert loaded == config and header["step"] == 2
    lines = [json.loads(x) for x in (runs / "tex" / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 < lines[-1]["l1"] < 1.0 and -1.0 <= lines[-1]["ssim"] <= 1.0
    # the copy-the-identity baseline is reported beside it; identity != target frame, so its L1 > 0
    assert 0.0 < lines[-1]["l1_identity_copy"] < 1.0 and lines[-1]["ssim_identity_copy"] < 1.0


def test_generate_one_video_frame_count_and_audio(runs, grid_root, tmp_path):
    from talkface.core import media

    clip = sorted((grid_root / "s1").glob("*.mpg"))[3]
    # input audio: 1.3 s at 22.05 kHz (generate must accept any rate), as 16-bit wav
    audio22 = media.read_audio(clip, sr=22050)[: int(1.3 * 22050)]
    wav = tmp_path / "speech.wav"
    wavfile.write(wav, 22050, (audio22 * 32767).astype(np.int16))
    frame = next(media.iter_frames(clip))
    png = tmp_path / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "talking.mp4"

    result = _invoke(["generate", "--audio", str(wav), "--identity", str(png), "--checkpoints", str(runs),
                      "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    reference = media.read_audio(wav, 16000)
    video = media.read_video(out)
    assert video.shape[1:] == (128, 128, 3)
    assert len(video) == math.ceil(len(reference) / 16000 * 25) == 33
    decoded = media.read_audio(out, 16000)
    assert abs(len(decoded) - len(reference)) < 2048  # AAC frames of 1024 samples at most pad it
    assert _correlation_after_alignment(reference, decoded) > AUDIO_CORRELATION_MIN


def test_generate_part_one_video_per_usable_clip_with_reference_frame_count(runs, prepared_grid, tmp_path):
    from talkface.core import media
    from talkface.store.checkpoints import find_stage
    from talkface.store.dataset import Dataset
    from talkface.utils.provenance import sha256_file

    ds = Dataset.open(prepared_grid)
    part, clip_ids = usable_part(prepared_grid)
    out = tmp_path / "ours"
    args = ["generate", "--data", str(prepared_grid), "--part", part, "--checkpoints", str(runs),
            "--out", str(out), "--device", "cpu", "--quiet"]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in out.glob("*.mp4")) == clip_ids
    for clip_id in clip_ids:
        video = out / f"{clip_id}.mp4"
        reference = media.read_video(ds.crop_path(clip_id))
        assert len(media.read_video(video)) == len(reference) == ds.record(clip_id).n_frames
        assert media.probe_video(video).has_audio
    again = _invoke(args)
    assert again.exit_code == 0, again.output
    summary = json.loads((out / "generation.json").read_text())
    assert summary["skipped_existing"] == clip_ids and summary["generated"] == [] and not summary["failed"]
    assert summary["method"] == "pipeline" and summary["protocol"] == ds.default_protocol
    # this texture stage edits the identity image (base "identity"): no warp to compose over
    assert summary["composite"] == "face-parts"
    assert "identity frame's pixels outside" in summary["composite_rule"]
    # provenance hashes the file each stage really loaded (blinks: best.pt when the stage selected one)
    for stage in ("landmarks", "blinks", "texture"):
        loaded = find_stage(runs, stage).weights_path()
        assert summary["checkpoints"][stage]["path"] == str(loaded.resolve())
        assert summary["checkpoints"][stage]["sha256"] == sha256_file(loaded)


def test_generate_deprecated_split_still_names_the_part(runs, prepared_grid, tmp_path):
    part, clip_ids = usable_part(prepared_grid)
    out = tmp_path / "old"
    result = _invoke(["generate", "--data", str(prepared_grid), "--split", part, "--checkpoints", str(runs),
                      "--out", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "--split is deprecated" in one_line(result.output)
    assert sorted(p.stem for p in out.glob("*.mp4")) == clip_ids


def test_generate_on_a_test_only_protocol(runs, prepared_grid, tmp_path):
    """A protocol with nothing but test clips generates them (the old code asked for 'train' clips)."""
    from talkface.store.dataset import Dataset
    from talkface.store.dataset_writer import DatasetStore

    data = tmp_path / "data"
    shutil.copytree(prepared_grid, data)
    ids = Dataset.open(data).usable_ids()[:2]
    writer = DatasetStore(data)
    writer.add_protocol("only-test", {c: "test" for c in ids})
    writer.write_manifest()
    parts = Dataset.open(data).parts("only-test")
    assert parts.test == ids and not parts.train and not parts.val
    out = tmp_path / "ours"
    result = _invoke(["generate", "--data", str(data), "--protocol", "only-test", "--part", "test",
                      "--checkpoints", str(runs), "--out", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in out.glob("*.mp4")) == ids
    missing = _invoke(["generate", "--data", str(data), "--protocol", "only-test", "--part", "val",
                       "--checkpoints", str(runs), "--out", str(tmp_path / "v"), "--device", "cpu"])
    assert missing.exit_code == 2
    assert "no usable 'val' clips" in one_line(missing.output) and "Traceback" not in missing.output


def test_identity_image_without_face_gives_clear_error(runs, tmp_path):
    from talkface.core.landmarks.base import NoFaceError
    from talkface.generation.generator import align_identity

    rng = np.random.default_rng(0)
    blank = np.full((200, 200, 3), 128, np.uint8)
    blank[50:150, 50:150] = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face found in the identity image"):
        align_identity(blank, 128)
    png = tmp_path / "noface.png"
    cv2.imwrite(str(png), blank)
    wav = tmp_path / "a.wav"
    _speech_wav(wav)
    result = _invoke(["generate", "--audio", str(wav), "--identity", str(png), "--checkpoints", str(runs),
                      "--out", str(tmp_path / "x.mp4"), "--device", "cpu"])
    assert result.exit_code == 2
    assert "no face found in the identity image" in one_line(result.output)
    assert not (tmp_path / "x.mp4").exists()


def test_tiny_identity_image_says_it_is_too_small_and_what_works(runs, grid_root, tmp_path):
    """A 32x32 face: not 'no face found' but the size problem and the size that works."""
    from talkface.core import media

    frame = next(media.iter_frames(sorted((grid_root / "s1").glob("*.mpg"))[0]))
    tiny = cv2.resize(frame[100:290, 60:250], (32, 32), interpolation=cv2.INTER_AREA)
    png = tmp_path / "tiny.png"
    cv2.imwrite(str(png), cv2.cvtColor(tiny, cv2.COLOR_RGB2BGR))
    wav = tmp_path / "a.wav"
    _speech_wav(wav)
    result = _invoke(["generate", "--audio", str(wav), "--identity", str(png), "--checkpoints", str(runs),
                      "--out", str(tmp_path / "x.mp4"), "--device", "cpu"])
    text = one_line(result.output)
    assert result.exit_code == 2, text
    assert "32x32 pixels, too small" in text and "at least 128x128 pixels" in text
    assert "no face found" not in text and "Traceback" not in result.output
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("bad", ["identity", "audio"])
def test_garbage_inputs_give_one_sentence_and_exit_2(runs, tmp_path, bad):
    png = tmp_path / "face.png"
    wav = tmp_path / "speech.wav"
    cv2.imwrite(str(png), np.zeros((200, 200, 3), np.uint8))
    _speech_wav(wav)
    garbage = {"identity": png, "audio": wav}[bad]
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n not really anything " * 50)
    result = _invoke(["generate", "--audio", str(wav), "--identity", str(png), "--checkpoints", str(runs),
                      "--out", str(tmp_path / "x.mp4"), "--device", "cpu"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    expected = {"identity": "is not a readable image", "audio": "holds no readable audio"}[bad]
    assert expected in lines[0] and str(garbage) in lines[0]
    assert not (tmp_path / "x.mp4").exists()


def test_generate_without_trained_stage_names_the_train_command(prepared_grid, tmp_path):
    empty = tmp_path / "runs"
    empty.mkdir()
    result = _invoke(["generate", "--data", str(prepared_grid), "--checkpoints", str(empty),
                      "--out", str(tmp_path / "o"), "--device", "cpu"])
    text = one_line(result.output)
    assert result.exit_code == 2, text
    assert f"run `talkface train landmarks --data {prepared_grid} --out {empty / 'lm'}` first" in text


def test_composite_rule_is_chosen_by_name_and_a_wrong_name_is_one_line(runs, grid_root, tmp_path):
    from talkface.core import media

    clip = sorted((grid_root / "s1").glob("*.mpg"))[2]
    wav = tmp_path / "speech.wav"
    wavfile.write(wav, 16000, (media.read_audio(clip, sr=16000)[:8000] * 32767).astype(np.int16))
    png = tmp_path / "face.png"
    cv2.imwrite(str(png), cv2.cvtColor(next(media.iter_frames(clip)), cv2.COLOR_RGB2BGR))
    base = ["generate", "--audio", str(wav), "--identity", str(png), "--checkpoints", str(runs),
            "--device", "cpu"]
    bad = _invoke([*base, "--out", str(tmp_path / "bad.mp4"), "--composite", "everywhere"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    message = one_line(bad.output)
    assert "unknown composite rule 'everywhere'" in message and "interior" in message
    assert not (tmp_path / "bad.mp4").exists()
    frames = {}
    for rule in ("interior", "face-parts"):
        out = tmp_path / f"{rule}.mp4"
        result = _invoke([*base, "--out", str(out), "--composite", rule])
        assert result.exit_code == 0, result.output
        frames[rule] = media.read_video(out).astype(np.int16)
    # the two rules keep the texture stage's pixels in different places, so the videos differ
    assert np.abs(frames["interior"] - frames["face-parts"]).max() > 10
