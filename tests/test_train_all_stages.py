"""`talkface train pipeline`: budget and steps parsing, the resume plan, and a few-step run end to end."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from talkface.store import checkpoints as ck
from talkface.store.blink_calibration import CALIBRATION_FILE
from talkface.train import all_stages


def test_parse_budget_and_steps() -> None:
    assert all_stages.parse_budget("45m") == 2700 and all_stages.parse_budget("1h30m") == 5400
    assert all_stages.parse_budget("90s") == 90
    assert all_stages.parse_budget("2") == 120  # bare number: minutes
    for bad in ("", "45x", "m", "1h 2q"):
        with pytest.raises(ValueError, match="--budget"):
            all_stages.parse_budget(bad)
    assert all_stages.parse_steps("lm=10,blink=2,tex=3") == {"landmarks": 10, "blinks": 2, "texture": 3}
    assert all_stages.parse_steps("texture=5") == {"texture": 5}
    for bad in ("lm", "lm=0", "eyes=3", "lm=x"):
        with pytest.raises(ValueError, match="--steps"):
            all_stages.parse_steps(bad)
    assert abs(sum(r.time_share for r in all_stages.SCHEDULE) - 1) < 1e-9


def _fake_run(out: Path, stage: str, step: int, seconds: float) -> None:
    """A run folder as training leaves it (weights and checkpoint.json, written by the store)."""
    state = {"stage": stage, "step": step, "models": {}, "budget": {"steps": step, "train_seconds": seconds}}
    ck.save_checkpoint(out / "checkpoints", state, ("last.pt",))


def test_plan_skips_finished_stages_and_resumes_stopped_ones(tmp_path: Path) -> None:
    _fake_run(tmp_path / "lm", "landmarks", 1500, 100.0)
    _fake_run(tmp_path / "blink", "blinks", 100, 10.0)
    plans = {p.scheduled.stage: p for p in all_stages.plan(tmp_path, {}, None)}
    assert plans["landmarks"].action == "skip" and plans["landmarks"].max_steps == 1500
    assert plans["blinks"].action == "resume" and plans["blinks"].max_steps == 400
    assert plans["texture"].action == "train" and plans["texture"].out_dir == tmp_path / "tex"
    # More steps asked: the finished stage continues. A time budget: a stage whose share is spent is done.
    assert {p.scheduled.stage: p.action for p in all_stages.plan(tmp_path, {"landmarks": 2000}, None)}[
        "landmarks"] == "resume"
    # the calibration's reserve comes off the budget first; blinks' share of the rest: 100 s, spent: 200 s
    _fake_run(tmp_path / "blink", "blinks", 100, 200.0)
    reserve = all_stages.calibration_reserve_s(24)
    assert reserve == 180.0 and all_stages.calibration_reserve_s(0) == 0.0
    planned = all_stages.plan(tmp_path, {}, reserve + 1000.0, calibration_clips=24)
    timed = {p.scheduled.stage: p for p in planned}
    assert timed["blinks"].action == "skip" and timed["blinks"].max_seconds == pytest.approx(100.0)
    assert timed["texture"].max_steps == 1000 * all_stages.BUDGET_STEP_FACTOR
    _fake_run(tmp_path / "tex", "landmarks", 1, 1.0)
    with pytest.raises(ck.CheckpointError, match="holds a 'landmarks' run, not 'texture'"):
        all_stages.plan(tmp_path, {}, None)


def test_pipeline_trains_every_stage_then_skips_them(prepared_grid: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted by Ctrl-C inside the texture stage's first step, then rerun: every stage trained,
    the texture weights those of an uninterrupted run; rerun again: every stage skipped."""
    from talkface.cli import app
    from talkface.train import blink_calibration as calibrate
    from talkface.train.texture import TextureStage

    out = tmp_path / "runs"
    cmd = ["train", "pipeline", "--data", str(prepared_grid), "--out", str(out), "--accelerator", "cpu",
           "--calibration-clips", "2", "--steps", "lm=2,blink=2,tex=2"]  # 2 clips: the path, not statistics
    real_step = TextureStage.training_step

    def step_then_ctrl_c(self: TextureStage, ctx: Any, batch: Any) -> dict[str, float]:
        losses = real_step(self, ctx, batch)
        if ctx.step + 1 == 1:  # ctx.step counts the finished steps
            os.kill(os.getpid(), signal.SIGINT)
        return losses

    monkeypatch.setattr(TextureStage, "training_step", step_then_ctrl_c)
    stopped = CliRunner().invoke(app, cmd)
    monkeypatch.undo()
    assert stopped.exit_code == 130, stopped.output
    said = [line for line in stopped.output.splitlines() if "continue with:" in line]
    assert len(said) == 1 and "texture stopped by SIGINT at step 1" in said[0], stopped.output
    assert said[0].split("continue with: ")[1].startswith("the same command, talkface train pipeline --data")
    assert ck.read_meta(out / "tex" / "checkpoints").step == 1  # not lost: --ckpt-every is 1000 there

    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped") == 2  # landmarks and blinks had finished
    for stage, folder, step in (("landmarks", "lm", 2), ("blinks", "blink", 2), ("texture", "tex", 2)):
        run = ck.find_stage(out, stage)
        assert run.out_dir == out / folder and run.meta.step == step
    assert "validation of the trained" in result.output
    rows = {(r["stage"], r["label"]): r for r in all_stages.summary_rows(out)}
    lm = rows[("landmarks", "mouth point error, px")]
    assert lm["baseline_name"] == "mean face" and lm["ours"] > 0 and lm["baseline"] > 0 and lm["step"] == 2
    tex = rows[("texture", "L1 to the real frame")]
    assert tex["baseline_name"] == "identity frame copied" and 0 < tex["baseline"] and 0 < tex["ours"]
    # the recipe's texture stage edits the warped identity: after a step or two it is still about the warp
    warp = rows[("texture", "L1 to the real frame (vs the warp)")]
    assert warp["baseline_name"] == "warped identity"
    assert abs(warp["ours"] - warp["baseline"]) < 0.2 * warp["baseline"]
    assert rows[("blinks", "blinks per minute")]["baseline"] > 0  # the real clips' rate
    calibrated = json.loads((out / "blink" / CALIBRATION_FILE).read_text())
    assert calibrated["amplitude"] in calibrate.AMPLITUDES and len(calibrated["clips"]) == 2
    # applied only when it found blinks, in the real crops and at the amplitude it picked (one texture
    # step draws few): decided here from the rates it recorded
    real, picked = calibrated["real_blinks_per_min"], calibrated["generated_blinks_per_min"][
        format(calibrated["amplitude"], "g")]
    found = real > 0 and picked > 0
    assert calibrated["applicable"] is found and (calibrated["why"] is None) is found
    label = (f"blinks per minute in generated frames, calibrated x{calibrated['amplitude']:g}" if found
             else f"blink calibration not applied: {calibrated['why']}")
    row = rows[("blinks", label)]
    assert row["baseline_name"] == "real crops" and row["baseline"] == real and row["ours"] == picked
    again = CliRunner().invoke(app, cmd)
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped") == 3
    assert "kept" in again.output and ("calibrated amplitude" in again.output or not found)
    bad = CliRunner().invoke(app, [*cmd[:-1], "lm=0"])
    assert bad.exit_code == 2 and "--steps" in bad.output

    # the interrupted texture stage ends where an uninterrupted one of 2 steps does, bit for bit (this one
    # validates on 4 pairs, not 256: validation moves no weight and no random stream)
    from talkface.train import settings as to
    from talkface.train.loop import run_training

    spec = to.STAGES.get("texture")
    values = {name: spec.default(name) for name, _, _ in to.SHARED_OPTIONS}
    values.update(seed=0, accelerator="cpu", out=tmp_path / "tex_uninterrupted", max_steps=2)
    stage = spec.build(prepared_grid, None, **{o.name: o.default for o in spec.options})
    stage.config.val_max_samples = 4
    run_training(stage, to.settings_from_cli(**values), quiet=True)
    ref = ck.load_checkpoint(tmp_path / "tex_uninterrupted" / "checkpoints" / "last.pt")
    got = ck.load_checkpoint(out / "tex" / "checkpoints" / "last.pt")
    assert ref["step"] == got["step"] == 2 and sorted(ref["models"]) == sorted(got["models"])
    for model, weights in ref["models"].items():
        for k, v in weights.items():
            assert torch.equal(v, got["models"][model][k]), (model, k)
    for opt, state in ref["optimizers"].items():
        for i, s in state["state"].items():
            for k, v in s.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(got["optimizers"][opt]["state"][i][k]))
