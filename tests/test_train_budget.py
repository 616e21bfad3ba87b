"""``train pipeline --budget`` is wall time on the clock, calibration included.

A fake clock advances by set amounts per optimisation step, validation, stage and calibration render,
and the expected stop steps and end times are worked out by hand in the comments, not by the code.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from test_models_training import _settings, _ToyStage

from talkface.store import blink_calibration as record_file
from talkface.store import checkpoints as ck
from talkface.train import all_stages
from talkface.train import blink_calibration as calibration
from talkface.train import settings as to
from talkface.train.loop import TrainContext, TrainResult, run_training

torch.set_num_threads(1)


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# -------------------------------------------------------------------------------------------------
# the loop's deadline


class _Timed(_ToyStage):
    """A step takes 1 s on the fake clock, a validation 3 s (saves and images take none)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        self.clock.advance(1.0)
        return super().training_step(ctx, batch)

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        self.clock.advance(3.0)
        return super().validate(ctx)


def test_the_loop_stops_so_that_its_final_validation_and_save_end_by_the_deadline(tmp_path: Path) -> None:
    """Validation every 3 steps, deadline at t=20. By hand: steps 1-3 end at t=3, the validation at 3
    (first timed: 3 s) ends at 6; steps 4-6 end at 9, and 9 + 3 (validation due at 6) + 1 (a step) + 3
    (the final validation) = 16 <= 20, so it goes on: validation to 12, steps 7-9 to 15. At step 9:
    15 + 3 + 1 + 3 = 22 > 20: stop; the final validation ends at t=18 (not 22, which counting only the
    next step and the final validation, 15 + 1 + 3 = 19 <= 20, would have reached)."""
    clock = FakeClock()
    result = run_training(_Timed(clock), _settings(tmp_path / "run", 100, val_every=3), quiet=True,
                          deadline=20.0, clock=clock)
    assert result.step == 9 and result.stopped_by == "time"
    assert clock.t == pytest.approx(18.0)
    assert ck.read_meta(tmp_path / "run" / "checkpoints").step == 9  # validated and saved


def test_a_validation_not_yet_timed_is_kept_for_by_its_cost_in_steps(tmp_path: Path) -> None:
    """No validation before the final one, which costs 3 s (3 steps): with that prior, at step 16 (t=16)
    16 + 1 + 3 = 20 <= 20 goes on, at step 17, 21 > 20 stops: done at t=20. Without it the run would take
    20 steps and its unforeseen validation would end at t=23."""
    clock = FakeClock()
    result = run_training(_Timed(clock), _settings(tmp_path / "run", 100, val_every=1000), quiet=True,
                          deadline=20.0, clock=clock, validation_steps=3.0)
    assert result.step == 17 and clock.t == pytest.approx(20.0)
    clock = FakeClock()
    result = run_training(_Timed(clock), _settings(tmp_path / "blind", 100, val_every=1000), quiet=True,
                          deadline=20.0, clock=clock)
    assert result.step == 20 and clock.t == pytest.approx(23.0)


def test_a_resumed_run_past_its_deadline_takes_no_step(tmp_path: Path) -> None:
    clock = FakeClock()
    run_training(_Timed(clock), _settings(tmp_path / "run", 2), quiet=True)
    again = run_training(_Timed(clock), _settings(tmp_path / "run", 100, resume=True), quiet=True,
                         deadline=clock.t, clock=clock)
    assert again.step == 2 and again.stopped_by == "time"


# -------------------------------------------------------------------------------------------------
# the blink calibration: clips timed as they render

RENDER_S = 29.0 / 6  # the incident: 29 s a clip under load, 6 renders a clip (the real crops + 5 amplitudes)


def _fake_calibration_world(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, n_train: int = 5,
                            real_per_clip: int = 2, generated_per_clip: int = 0) -> None:
    """Everything calibrate_blink_amplitude touches, faked: a dataset of ``n_train`` training clips of
    3 s, a detector whose every call costs RENDER_S on ``clock`` and counts ``real_per_clip`` blinks in
    real frames and ``generated_per_clip`` in generated ones."""
    from talkface.core import landmarks
    from talkface.generation import generator, method
    from talkface.store import dataset

    def _blink_run(root: Any, stage: str) -> SimpleNamespace:
        return SimpleNamespace(out_dir=Path(root) / "blink")

    clips = [f"s1_clip{i}" for i in range(n_train)]
    parts = SimpleNamespace(train=clips, protocol="seen")
    parts.require = lambda *names: parts
    fake_ds = SimpleNamespace(fps=25.0, parts=lambda protocol=None, **kw: parts)
    monkeypatch.setattr(dataset.Dataset, "open", staticmethod(lambda path: fake_ds))

    clip = SimpleNamespace(n_frames=75, fps=25.0, reference_frames=lambda: iter([np.zeros((2, 2, 3))] * 75))
    monkeypatch.setattr(generator, "clip_inputs", lambda ds, cid: clip)

    class Pipeline:
        def frames(self, gen: Any, clip: Any, seed: int):
            return iter([np.ones((2, 2, 3))] * clip.n_frames)

    monkeypatch.setattr(method, "TrainedPipeline", Pipeline)
    monkeypatch.setattr(landmarks, "get_landmark_backend", lambda name: SimpleNamespace(settings=lambda: {}))

    def count(detector: Any, frames: np.ndarray, fps: float) -> int:
        clock.advance(RENDER_S)
        return generated_per_clip if frames.any() else real_per_clip

    monkeypatch.setattr(calibration, "_blink_count", count)
    monkeypatch.setattr(generator, "find_run", _blink_run)


def _gen(blinks_sha: str = "b", texture_sha: str = "t") -> SimpleNamespace:
    return SimpleNamespace(blink_model=SimpleNamespace(config=SimpleNamespace(amplitude=1.0)),
                           provenance={"checkpoints": {"blinks": {"sha256": blinks_sha},
                                                       "texture": {"sha256": texture_sha}}})


def test_the_calibration_renders_only_the_clips_that_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """40 s left, 1.25 s a render expected, 29/6 s measured. By hand: clip 1 may start (6 x 1.25 = 7.5 <=
    40) and its six renders end at t=29 (each fits: 40 - 24.17 = 15.8 >= 4.83 before the last); clip 2
    needs 6 x 4.83 = 29 s with 11 left: not started. One clip, done at t=29 <= 40."""
    clock = FakeClock()
    _fake_calibration_world(monkeypatch, clock, real_per_clip=2, generated_per_clip=1)
    record = calibration.calibrate_blink_amplitude("data", tmp_path, n_clips=5, gen=_gen(), deadline=40.0,
                                                   clock=clock, first_render_s=1.25)
    assert record is not None and len(record["clips"]) == 1 and record["clips_asked"] == 5
    assert record["stopped_by"] == "time" and clock.t == pytest.approx(29.0)
    # 2 real blinks and 1 generated at every amplitude in 3 s: 40 vs 20 a minute; ties go to the smallest
    assert record["real_blinks_per_min"] == pytest.approx(40.0) and record["amplitude"] == 1.0
    assert record["applicable"] and record_file.read_calibration(tmp_path / "blink") == record
    # no deadline: every clip (the old behaviour, 5 x 29 s)
    clock.t = 0.0
    record = calibration.calibrate_blink_amplitude("data", tmp_path, n_clips=5, gen=_gen(), clock=clock)
    assert len(record["clips"]) == 5 and record["stopped_by"] is None and clock.t == pytest.approx(145.0)


def test_a_clip_that_stops_fitting_part_way_is_dropped(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """20 s left: clip 1 may start (7.5 <= 20); renders end at 4.83, 9.67, 14.5, 19.33; the fifth would
    need 4.83 s with 0.67 left: the clip is dropped and nothing is written. Ends at 19.33 <= 20."""
    clock = FakeClock()
    _fake_calibration_world(monkeypatch, clock)
    record = calibration.calibrate_blink_amplitude("data", tmp_path, n_clips=5, gen=_gen(), deadline=20.0,
                                                   clock=clock, first_render_s=1.25)
    assert record is None and clock.t == pytest.approx(4 * RENDER_S)
    assert not record_file.calibration_path(tmp_path / "blink").exists()


def test_a_calibration_that_finds_no_blinks_is_recorded_but_not_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    _fake_calibration_world(monkeypatch, clock, real_per_clip=3, generated_per_clip=0)
    record = calibration.calibrate_blink_amplitude("data", tmp_path, n_clips=2, gen=_gen(), clock=clock)
    assert not record["applicable"] and "no blinks in the generated frames" in record["why"]
    assert "60.0/min in the real crops" in record["why"]  # 6 blinks in 2 clips of 3 s
    assert record_file.read_calibration(tmp_path / "blink") is None  # generation finds nothing to apply
    assert record_file.read_record(tmp_path / "blink")["why"] == record["why"]
    # none in the real crops either: nothing to match
    _fake_calibration_world(monkeypatch, clock, real_per_clip=0, generated_per_clip=1)
    record = calibration.calibrate_blink_amplitude("data", tmp_path, n_clips=2, gen=_gen(), clock=clock)
    assert not record["applicable"] and "no blinks in the real crops" in record["why"]
    assert calibration.verdict(40.0, {"1": 0.0, "1.2": 80.0}, 1.0) is not None  # the pick itself gives none
    assert calibration.verdict(40.0, {"1": 20.0, "1.2": 80.0}, 1.0) is None


# -------------------------------------------------------------------------------------------------
# the whole pipeline on a fake clock


def _fake_pipeline(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, tail_s: dict[str, float]
                   ) -> list[tuple[str, float, float]]:
    """Stages that take 2 s of setup, train up to the deadline they are given and then overrun it by
    ``tail_s[stage]`` (their final validation and save), and write a checkpoint; returns (stage, start,
    deadline) per stage trained."""
    calls: list[tuple[str, float, float]] = []
    def build(self: to.StageSpec, data: Any, protocol: Any, **kw: Any) -> SimpleNamespace:
        return SimpleNamespace(name=self.name)

    monkeypatch.setattr(to.StageSpec, "build", build)

    def fake_run_training(stage: Any, settings: Any, progress: Any = None, deadline: float | None = None,
                          clock: Any = None, validation_steps: float = 0.0) -> TrainResult:
        calls.append((stage.name, clock(), deadline))
        start = clock()
        clock.advance(2.0)
        clock.t = max(clock.t, deadline) + tail_s.get(stage.name, 1.0)
        state = {"stage": stage.name, "step": 5, "models": {},
                 "budget": {"steps": 5, "train_seconds": clock.t - start, "stopped_by": "time"}}
        ck.save_checkpoint(settings.checkpoint_dir, state, ("last.pt",))
        return TrainResult(out_dir=settings.out_dir, step=5, stopped_by="time")

    monkeypatch.setattr("talkface.train.loop.run_training", fake_run_training)
    return calls


def _loaded_generator(out: Path, clock: FakeClock) -> Any:
    def load(root: Any, **kw: Any) -> SimpleNamespace:
        clock.advance(3.0)  # loading the stages takes time too
        sha = lambda stage: ck.find_stage(out, stage).meta.files["last.pt"].sha256  # noqa: E731
        return _gen(sha("blinks"), sha("texture"))

    return load


def test_pipeline_budget_holds_with_the_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--budget 3m on a dataset of 5 training clips, the calibration at 29 s a clip (the incident).

    By hand, times in s from the start: the calibration's reserve is 5 clips x 7.5 = 37.5 (at most half
    of what is left). Landmarks at 0: (180 - 37.5) x 0.25 = 35.625, ends at 36.625 (1 s over). Blinks at
    36.625: (143.375 - 37.5) x 0.10 / 0.75 = 14.1167, deadline 50.742, ends 51.742. Texture at 51.742:
    everything but the reserve, deadline 142.5, ends 143.5. Calibration: 36.5 s left >= 7.5, loading
    3 s (146.5), clip 1 (6 renders of 4.83) to 175.5, clip 2 needs 29 s with 4.5 left: done at 175.5.
    The old code reserved a fixed 7.5 s a clip of 24 and rendered every clip whatever the time."""
    clock = FakeClock()
    out = tmp_path / "runs"
    calls = _fake_pipeline(monkeypatch, clock, {})
    _fake_calibration_world(monkeypatch, clock, n_train=5, real_per_clip=2, generated_per_clip=0)
    monkeypatch.setattr("talkface.generation.generator.load_generator", _loaded_generator(out, clock))
    all_stages.run_pipeline(Path("data"), out, None, {}, 180.0, {"seed": 0}, calibration_clips=24,
                            started=0.0, clock=clock)
    assert [c[0] for c in calls] == ["landmarks", "blinks", "texture"]
    starts = [c[1] for c in calls]
    deadlines = [c[2] for c in calls]
    assert starts == pytest.approx([0.0, 36.625, 51.741667])
    assert deadlines == pytest.approx([35.625, 50.741667, 142.5])
    assert clock.t == pytest.approx(175.5) and clock.t <= 180 * 1.05
    record = record_file.read_record(out / "blink")
    assert len(record["clips"]) == 1 and record["stopped_by"] == "time"
    # 0 generated blinks against 40 real a minute: recorded, not applied
    assert not record["applicable"] and record_file.read_calibration(out / "blink") is None
    row = [r for r in all_stages.summary_rows(out) if r["file"] == record_file.CALIBRATION_FILE][0]
    assert row["label"].startswith("blink calibration not applied: no blinks in the generated frames")


def test_pipeline_skips_the_calibration_with_a_note_when_no_clip_fits(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """The texture stage overruns its deadline (142.5) by 32 s: 5.5 s are left at 174.5, less than a clip's
    7.5: no generator is loaded, nothing rendered, a note printed; the run ends at 174.5 <= 180."""
    clock = FakeClock()
    out = tmp_path / "runs"
    _fake_pipeline(monkeypatch, clock, {"texture": 32.0})
    _fake_calibration_world(monkeypatch, clock, n_train=5)

    def no_loading(*a: Any, **k: Any) -> None:
        raise AssertionError("the generator was loaded with no time left")

    monkeypatch.setattr("talkface.generation.generator.load_generator", no_loading)
    all_stages.run_pipeline(Path("data"), out, None, {}, 180.0, {"seed": 0}, calibration_clips=24,
                            started=0.0, clock=clock)
    assert clock.t == pytest.approx(174.5)
    said = capsys.readouterr()
    assert "blink calibration skipped: 6 s of --budget left" in " ".join((said.out + said.err).split())
    assert not record_file.calibration_path(out / "blink").exists()


def test_a_rerun_counts_the_training_time_already_spent(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Landmarks already spent 100 s of a 180 s budget (checkpoint.json): the rerun's clock has 80 s, no
    calibration. By hand: landmarks' cap (its share of 180: 45 s) is spent, so it is skipped; blinks at 0
    get 80 x 0.10 / 0.75 = 10.667."""
    clock = FakeClock()
    out = tmp_path / "runs"
    spent = {"stage": "landmarks", "step": 3, "models": {}, "budget": {"steps": 3, "train_seconds": 100.0}}
    ck.save_checkpoint(out / "lm" / "checkpoints", spent, ("last.pt",))
    calls = _fake_pipeline(monkeypatch, clock, {})
    all_stages.run_pipeline(Path("data"), out, None, {}, 180.0, {"seed": 0}, calibration_clips=0,
                            started=0.0, clock=clock)
    assert [c[0] for c in calls] == ["blinks", "texture"]
    assert calls[0][2] == pytest.approx(80.0 * 0.10 / 0.75)


def test_pipeline_passes_a_stage_its_own_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train pipeline --feature-norm dataset --no-voice-augment` reaches the landmark stage; the other
    stages and options keep their defaults; an option a stage does not have is refused by name."""
    clock = FakeClock()
    _fake_pipeline(monkeypatch, clock, {})
    seen: dict[str, dict[str, Any]] = {}

    def build(self: to.StageSpec, data: Any, protocol: Any, **kw: Any) -> SimpleNamespace:
        seen[self.name] = kw
        return SimpleNamespace(name=self.name)

    monkeypatch.setattr(to.StageSpec, "build", build)
    all_stages.run_pipeline(Path("data"), tmp_path / "runs", None, {}, 180.0, {"seed": 0},
                            calibration_clips=0, started=0.0, clock=clock,
                            stage_options={"landmarks": {"feature_norm": "dataset", "voice_augment": False}})
    assert seen["landmarks"]["feature_norm"] == "dataset" and seen["landmarks"]["voice_augment"] is False
    assert seen["landmarks"]["window_len"] == 32
    assert seen["blinks"] == {"seq_len": 40}
    with pytest.raises(ValueError, match="landmarks has no option bogus"):
        all_stages.run_pipeline(Path("data"), tmp_path / "runs2", None, {}, 180.0, {"seed": 0},
                                calibration_clips=0, started=0.0, clock=clock,
                                stage_options={"landmarks": {"bogus": 1}})
