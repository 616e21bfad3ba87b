"""A dataset with one usable clip has nothing to hold out: validation runs on the training clip, and
says so (a warning, ``val_is_train`` in metrics.jsonl, the checkpoint's dataset record and the
summaries)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from talkface.store import checkpoints as ck

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_clip(grid_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import _prepare_grid

    from talkface.prepare.corpora import get_recipe

    sources = get_recipe("grid").discover(grid_root, split="seen").clips
    first = sorted(c.clip_id for c in sources if c.speaker == "s1" and c.split == "train")[0]
    return _prepare_grid(grid_root, tmp_path_factory.mktemp("one_clip"), lambda s: s.clip_id == first)


def test_one_clip_validates_on_it_and_says_so(one_clip: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from typer.testing import CliRunner

    from talkface.cli import app
    from talkface.models.speech_to_landmarks import landmark_model_from_state, utterance_normalised
    from talkface.store.dataset import Dataset
    from talkface.train import all_stages
    from talkface.train.data import load_clip_arrays
    from talkface.train.landmarks import evaluate_clips

    ds = Dataset.open(one_clip)
    (clip_id,) = [r.clip_id for r in ds.records()]
    out = tmp_path / "lm"
    with caplog.at_level(logging.WARNING, logger="talkface.train.data"):
        result = CliRunner().invoke(app, ["train", "landmarks", "--data", str(one_clip), "--out", str(out),
                                          "--max-steps", "2", "--val-every", "1", "--batch-size", "2",
                                          "--accelerator", "cpu"])
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if "none to hold out" in r.getMessage()]
    assert len(warned) == 1 and clip_id in warned[0] and "fitting, not generalisation" in warned[0]
    assert "validation ran on the training clip" in " ".join(result.output.split())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and all(line["val_is_train"] for line in lines)
    state = ck.load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["dataset"]["val_is_train"] and state["dataset"]["n_val_clips"] == 1
    # the numbers are those of the final weights on the training clip itself, recomputed here
    model, config, _ = landmark_model_from_state(state)
    clip = load_clip_arrays(ds, clip_id)
    if config.feature_norm == "utterance":  # as the stage reads every clip (the default)
        clip.features = utterance_normalised(clip.features)
    with torch.no_grad():
        by_hand = evaluate_clips(model, [clip], config.crop_size)
    assert by_hand and all(lines[-1][k] == pytest.approx(v, rel=1e-6) for k, v in by_hand.items())
    rows = [r for r in all_stages.summary_rows(tmp_path) if r["stage"] == "landmarks"]
    assert rows and all(r["val_is_train"] for r in rows)
