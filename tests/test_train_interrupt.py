"""Ctrl-C (SIGINT) and SIGTERM during training: an exact-resume checkpoint, then ``--resume`` gives the
weights, optimiser state, best.pt, step files and validation lines of an uninterrupted run, bit for bit.

The signal is sent by the stage itself at a known point (``os.kill`` to this process from inside a
training step, a validation or a checkpoint's assembly), so where it lands is deterministic.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from test_models_training import _settings, _ToyStage

from talkface.store import checkpoints as ck
from talkface.train.loop import TrainContext, TrainingInterrupted, run_training

torch.set_num_threads(1)


def _kill(sig: int = signal.SIGINT) -> None:
    # raise_signal, not os.kill(getpid()): it goes to this thread and Python runs the handler before it
    # returns; a process-directed kill may land on another thread, and the handler runs a few
    # instructions later
    signal.raise_signal(sig)


class _Selecting(_ToyStage):
    """The toy stage with a selection score computed from its weights (so best.pt depends on every
    validation) that sends a signal at a chosen point: ``during=("step", k)``: inside optimisation step
    k; ``("validate", k)``: inside the validation after step k; ``second_on_save``: a second signal while
    the interrupt's checkpoint is being assembled."""

    selection_name = "output at zero"

    def __init__(self, during: tuple[str, int] | None = None, sig: int = signal.SIGINT,
                 second_on_save: bool = False) -> None:
        super().__init__()
        self.during, self.sig, self.second_on_save = during, sig, second_on_save
        self.signalled = False

    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        losses = super().training_step(ctx, batch)
        if self.during == ("step", ctx.step + 1):  # ctx.step counts finished steps
            self.signalled = True
            _kill(self.sig)
        return losses

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        if self.during == ("validate", ctx.step):
            self.signalled = True
            _kill(self.sig)
            raise AssertionError("the signal did not abandon the validation")
        out = super().validate(ctx)
        return {**out, "score": abs(out["val"] - 0.5)}

    def selection_score(self, metrics: dict[str, float]) -> float | None:
        return metrics["score"]

    def extra_state(self) -> dict[str, Any]:
        if self.second_on_save and self.signalled:
            _kill(self.sig)
        return {}


STEPS = 10
# validation every 3 steps, a step checkpoint every 4: step 8 owes a checkpoint, 9 a validation, 10 all
KW = dict(val_every=3, ckpt_every=4)


def _run(out: Path, stage: _ToyStage, resume: bool = False) -> Any:
    return run_training(stage, _settings(out, STEPS, resume=resume, **KW), quiet=True)


def _state(out: Path, name: str = "last.pt") -> dict[str, Any]:
    return ck.load_checkpoint(out / "checkpoints" / name)


def _validations(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(ref: Path, out: Path) -> None:
    """Everything an uninterrupted run leaves, compared bit for bit (not with the code's own output)."""
    for name in ("last.pt", "best.pt"):
        a, b = _state(ref, name), _state(out, name)
        assert a["step"] == b["step"], name
        for k, v in a["models"]["net"].items():
            assert torch.equal(v, b["models"]["net"][k]), (name, k)
        for key in ("exp_avg", "exp_avg_sq"):
            for i, s in a["optimizers"]["net"]["state"].items():
                assert torch.equal(s[key], b["optimizers"]["net"]["state"][i][key]), (name, key)
        assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]), name
        assert a["best_score"] == b["best_score"]
    steps = lambda d: sorted(p.name for p in (d / "checkpoints").glob("step_*.pt"))  # noqa: E731
    assert steps(ref) == steps(out)
    for name in steps(ref):  # each periodic snapshot holds the same weights
        assert all(torch.equal(v, _state(out, name)["models"]["net"][k])
                   for k, v in _state(ref, name)["models"]["net"].items()), name
    assert _validations(ref) == _validations(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    _run(out, _Selecting())
    return out


@pytest.mark.parametrize("during, pending", [
    (("step", 5), []),                                   # a step that owes nothing
    (("step", 8), ["checkpoint"]),                       # before the periodic checkpoint
    (("validate", 6), ["validate"]),                     # inside a validation: abandoned, redone
    (("step", 10), ["validate", "images", "checkpoint"]),  # the last step, before its final work
    (("validate", 10), ["validate", "images", "checkpoint"]),
])
def test_ctrl_c_then_resume_equals_the_uninterrupted_run(reference: Path, tmp_path: Path,
                                                         during: tuple[str, int], pending: list[str]) -> None:
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        _run(out, _Selecting(during))
    stop = info.value
    assert stop.exit_code == 130 and stop.signal_name == "SIGINT" and stop.step == during[1]
    assert stop.saved == out / "checkpoints" / "last.pt"
    saved = _state(out)
    assert saved["step"] == during[1] and saved["budget"]["pending"] == pending
    assert saved["budget"]["interrupted_by"] == "SIGINT"
    meta = ck.read_meta(out / "checkpoints")  # the sidecar describes the file that is there
    assert meta.step == during[1]
    last = out / "checkpoints" / "last.pt"
    assert meta.files["last.pt"].sha256 == hashlib.sha256(last.read_bytes()).hexdigest()
    assert not list((out / "checkpoints").glob(".*tmp*"))
    assert signal.getsignal(signal.SIGINT) is before  # the handler from before the run is back
    result = _run(out, _Selecting(), resume=True)
    assert result.step == STEPS and result.stopped_by == "steps"
    _assert_same_run(reference, out)


def test_sigterm_is_handled_like_ctrl_c(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        _run(out, _Selecting(("step", 7), sig=signal.SIGTERM))
    assert info.value.exit_code == 143 and _state(out)["step"] == 7
    assert signal.getsignal(signal.SIGTERM) is before
    _run(out, _Selecting(), resume=True)
    _assert_same_run(reference, out)


def test_interrupted_twice_and_resumed_twice(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        _run(out, _Selecting(("validate", 3)))
    with pytest.raises(TrainingInterrupted):
        _run(out, _Selecting(("step", 9)), resume=True)
    _run(out, _Selecting(), resume=True)
    _assert_same_run(reference, out)


def test_a_second_signal_while_saving_stops_at_once_and_keeps_the_last_good_file(reference: Path,
                                                                                  tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:  # first at step 6, second while its save is assembled
        _run(out, _Selecting(("step", 6), second_on_save=True))
    stop = info.value
    assert stop.saved is None and stop.step == 6 and stop.exit_code == 130
    cdir = out / "checkpoints"
    # the last good file is the periodic checkpoint of step 4, whole and described by the sidecar
    assert _state(out)["step"] == 4 and stop.last_good() == (cdir / "last.pt", 4)
    meta = ck.read_meta(cdir)
    assert meta.step == 4
    for name, entry in meta.files.items():
        assert entry.sha256 == hashlib.sha256((cdir / name).read_bytes()).hexdigest(), name
    assert sorted(p.name for p in cdir.iterdir()) == ["best.pt", "checkpoint.json", "last.pt",
                                                      "step_0000004.pt"]
    sentence = stop.sentence("talkface train toy --resume")
    assert "\n" not in sentence and "step 4" in sentence and "without saving" in sentence
    # and that file resumes exactly
    _run(out, _Selecting(), resume=True)
    _assert_same_run(reference, out)


def test_a_stop_while_writing_keeps_the_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's side: an interrupt during the temporary file's write leaves last.pt and the sidecar as
    they were; one during the renames and the sidecar is held until both are done."""
    cdir = tmp_path / "checkpoints"
    state = lambda step: {"stage": "toy", "step": step, "models": {"w": torch.full((64,), float(step))}}  # noqa: E731
    ck.save_checkpoint(cdir, state(1), ("last.pt",))
    before = {p.name: p.read_bytes() for p in cdir.iterdir()}
    real_write = Path.write_bytes

    def write_then_ctrl_c(self: Path, data: bytes) -> int:
        real_write(self, data[: len(data) // 2])
        _kill()  # the default handler: KeyboardInterrupt right here
        raise AssertionError("not interrupted")

    monkeypatch.setattr(Path, "write_bytes", write_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(cdir, state(2), ("last.pt",))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in cdir.iterdir()} == before  # no temporary file left either

    real_replace = os.replace

    def replace_with_ctrl_c(src: Any, dst: Any) -> None:
        _kill()  # held until the commit is done
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(cdir, state(3), ("last.pt",))
    monkeypatch.undo()
    raw = (cdir / "last.pt").read_bytes()
    assert torch.load(io.BytesIO(raw))["step"] == 3
    meta = ck.read_meta(cdir)
    assert meta.step == 3 and meta.files["last.pt"].sha256 == hashlib.sha256(raw).hexdigest()


# -------------------------------------------------------------------------------------------------
# a real stage, through the command line


def _lm_cmd(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "landmarks", "--data", str(data), "--out", str(out), "--max-steps", str(steps),
            "--val-every", "3", "--batch-size", "4", "--accelerator", "cpu", *extra]


def _same_weights(a: Path, b: Path, name: str = "last.pt") -> None:
    sa, sb = ck.load_checkpoint(a / "checkpoints" / name), ck.load_checkpoint(b / "checkpoints" / name)
    assert sa["step"] == sb["step"]
    for model, weights in sa["models"].items():
        for k, v in weights.items():
            assert torch.equal(v, sb["models"][model][k]), (name, model, k)
    for opt, st in sa["optimizers"].items():
        for i, s in st["state"].items():
            for k, v in s.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["optimizers"][opt]["state"][i][k]))


def test_ctrl_c_in_train_landmarks_prints_the_command_that_continues_exactly(
        prepared_grid: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case, small: SIGINT inside step 5 of 8 (validation every 3): exit 130, one sentence
    naming last.pt and the exact command with --resume; that command ends where an uninterrupted run
    ends, bit for bit. The run folder has a space in its path (the printed commands quote it)."""
    from typer.testing import CliRunner

    from talkface.cli import app
    from talkface.train.landmarks import LandmarkStage

    ref = tmp_path / "ref"
    done = CliRunner().invoke(app, _lm_cmd(prepared_grid, ref, 8))
    assert done.exit_code == 0, done.output
    hint = next(line for line in done.output.splitlines() if "TensorBoard: tensorboard --logdir" in line)
    assert shlex.split(hint.split("--logdir ", 1)[1]) == [str(ref / "tensorboard")]

    out = tmp_path / "my runs" / "lm"
    real_step = LandmarkStage.training_step

    def step_then_ctrl_c(self: LandmarkStage, ctx: TrainContext, batch: Any) -> dict[str, float]:
        losses = real_step(self, ctx, batch)
        if ctx.step + 1 == 5:
            _kill()
        return losses

    monkeypatch.setattr(LandmarkStage, "training_step", step_then_ctrl_c)
    stopped = CliRunner().invoke(app, _lm_cmd(prepared_grid, out, 8))
    monkeypatch.undo()
    assert stopped.exit_code == 130, stopped.output
    said = [line for line in stopped.output.splitlines() if "continue with:" in line]
    assert len(said) == 1 and "stopped by SIGINT at step 5" in said[0]
    assert f"saved an exact-resume checkpoint to {out / 'checkpoints' / 'last.pt'}" in said[0]
    command = shlex.split(said[0].split("continue with: ", 1)[1])
    assert command[:3] == ["talkface", "train", "landmarks"] and command[-1] == "--resume", said
    assert command[command.index("--out") + 1] == str(out)
    assert ck.load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 5
    resumed = CliRunner().invoke(app, command[1:])
    assert resumed.exit_code == 0, resumed.output
    _same_weights(ref, out)
    assert _validations(ref) == _validations(out)  # steps 3, 6 and 8, the same numbers


def test_sigint_to_a_real_train_process(prepared_grid: Path, tmp_path: Path) -> None:
    """A real `talkface train landmarks` process with a DataLoader worker gets SIGINT, as a terminal's
    Ctrl-C sends it (to the whole process group), once its validation at step 10 is written: it exits
    130 with the sentence, and resuming from the step it saved gives the weights of an uninterrupted run
    of the same steps (the step it stopped at is whatever the signal met)."""
    import subprocess
    import sys
    import time

    out = tmp_path / "lm"
    args = [sys.executable, "-m", "talkface.cli", *_lm_cmd(prepared_grid, out, 400, "--num-workers", "1")]
    args[args.index("--val-every") + 1] = "10"
    # one thread, as in this process (torch.set_num_threads(1) above): the same sums in the same order
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own process group, as a terminal gives it
    try:
        metrics = out / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and '"step": 10,' in metrics.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)  # the main process and its worker, as Ctrl-C does
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    sentence = [line for line in stderr.splitlines() if "continue with:" in line]
    assert len(sentence) == 1 and "saved an exact-resume checkpoint" in sentence[0], stderr
    step = ck.load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert 10 <= step < 400
    # continue a few steps past it, and compare with an uninterrupted run of as many steps
    from typer.testing import CliRunner

    from talkface.cli import app

    end = step + 2
    resumed = CliRunner().invoke(app, _lm_cmd(prepared_grid, out, end, "--val-every", "10", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    ref = tmp_path / "ref"
    done = CliRunner().invoke(app, _lm_cmd(prepared_grid, ref, end, "--val-every", "10"))
    assert done.exit_code == 0, done.output
    _same_weights(ref, out)


def test_resume_from_a_damaged_last_pt_says_which_file_to_copy(reference: Path, tmp_path: Path) -> None:
    """last.pt cut short after a run stopped at step 8: --resume names step_0000008.pt and the copy that
    uses it; done as it says, the run continues to the uninterrupted result."""
    import shutil

    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        _run(out, _Selecting(("step", 9)))  # last.pt at 9, step_0000008.pt from the periodic save
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ck.CheckpointError) as info:
        _run(out, _Selecting(), resume=True)
    msg = str(info.value)
    assert "step_0000008.pt (step 8)" in msg and "--resume" in msg and "\n" not in msg
    copy = shlex.split(msg.split("`")[1])
    assert copy == ["cp", str(out / "checkpoints" / "step_0000008.pt"), str(last)]
    shutil.copyfile(copy[1], copy[2])
    _run(out, _Selecting(), resume=True)
    _assert_same_run(reference, out)
