"""`talkface compare`: methods tiled side by side with their names, one audio track, the shortest length."""

from __future__ import annotations

import numpy as np
import pytest
from generation_runs import one_line
from typer.testing import CliRunner

FPS = 25.0
SR = 16000


def _video(path, n: int, value: int, size: int = 128, audio: bool = True, tone: float = 440.0):
    from talkface.generation.generator import write_video

    frames = [np.full((size, size, 3), value, np.uint8) for _ in range(n)]
    t = np.arange(int(round(n / FPS * SR))) / SR
    sound = (0.2 * np.sin(2 * np.pi * tone * t)).astype(np.float32) if audio else None
    write_video(path, frames, sound, FPS)
    return path


def _compare(*args: str):
    from talkface.cli import app

    return CliRunner().invoke(app, ["compare", *args])


def test_tiles_labels_and_first_inputs_audio(tmp_path):
    from talkface.core import media
    from talkface.generation.compare import label_height

    real = _video(tmp_path / "real.mp4", 20, 200, tone=300.0)
    ours = _video(tmp_path / "ours.mp4", 21, 120, tone=900.0)  # one frame longer: allowed, cut
    static = _video(tmp_path / "static.mp4", 20, 60, size=64, audio=False)  # resized to the first tile
    out = tmp_path / "cmp.mp4"
    result = _compare(f"real={real}", f"ours={ours}", f"static={static}", "--out", str(out))
    assert result.exit_code == 0, result.output
    bar = label_height(128)
    video = media.read_video(out)
    assert video.shape == (20, 128 + bar, 3 * 128, 3)
    for i, value in enumerate((200, 120, 60)):  # each tile shows its input, left to right
        tile = video[:, bar:, i * 128:(i + 1) * 128].astype(float)
        assert abs(tile[:, 8:-8, 8:-8].mean() - value) < 4
        label = video[:, :bar, i * 128:(i + 1) * 128]
        assert (label.max(axis=-1) > 200).mean() > 0.02  # the name is drawn in white on black
    audio = media.read_audio(out, SR)
    assert abs(len(audio) / SR - 20 / FPS) < 2048 / SR  # the video's duration (AAC pads < 2048 samples)
    spectrum = np.abs(np.fft.rfft(audio[:SR // 2]))
    assert abs(np.argmax(spectrum) * SR / (SR // 2) - 300.0) < 10  # the first input's track


def test_inputs_more_than_one_frame_apart_are_refused(tmp_path):
    a = _video(tmp_path / "a.mp4", 20, 100)
    b = _video(tmp_path / "b.mp4", 17, 100)
    out = tmp_path / "cmp.mp4"
    result = _compare(f"real={a}", f"ours={b}", "--out", str(out))
    assert result.exit_code == 2
    assert "frame counts differ by more than 1 (real 20, ours 17)" in one_line(result.output)
    assert not out.exists()


def test_folder_inputs_take_the_clip(tmp_path):
    from talkface.core import media

    for method, value in (("real", 180), ("ours", 90)):
        (tmp_path / method).mkdir()
        _video(tmp_path / method / "s1_x.mp4", 10, value)
    out = tmp_path / "cmp.mp4"
    result = _compare(f"real={tmp_path / 'real'}", f"ours={tmp_path / 'ours'}", "--clip", "s1_x",
                      "--out", str(out))
    assert result.exit_code == 0, result.output
    assert media.read_video(out).shape[:3] == (10, 128 + 22, 256)
    missing = _compare(f"real={tmp_path / 'real'}", "--out", str(tmp_path / "x.mp4"))
    assert missing.exit_code == 2 and "pass --clip ID" in one_line(missing.output)
    wrong = _compare(f"real={tmp_path / 'real'}", "--clip", "nope", "--out", str(tmp_path / "x.mp4"))
    assert wrong.exit_code == 2 and "has no nope.mp4 (it holds s1_x)" in one_line(wrong.output)


@pytest.mark.parametrize("specs,names", [(["real=a.mp4", "b.mp4"], ["real", "b"]),
                                         (["x=dir/c.mp4"], ["x"])])
def test_parse_inputs(specs, names):
    from talkface.generation.compare import parse_inputs

    assert [n for n, _ in parse_inputs(specs)] == names
