"""The checkpoints contract: sidecar JSON, finding stages without loading weights, last/best policy,
one-sentence errors for truncated or foreign files, provenance of the file actually loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from talkface.store import checkpoints as ck


def _state(stage: str, step: int, **extra) -> dict:
    return {"stage": stage, "step": step, "config": {"hidden": 3},
            "models": {"net": {"w": torch.ones(2) * step}}, "seed": 5,
            "dataset": {"root": "/d", "protocol": "speaker-independent"},
            "budget": {"max_steps": 10, "steps": step, "train_seconds": 1.5}, "settings": {"lr": 0.1},
            **extra}


def test_meta_round_trip() -> None:
    meta = ck.CheckpointMeta(stage="blinks", step=7, config={"a": 1}, seed=3,
                             best=ck.BestInfo(file="best.pt", step=5, score=0.25, score_name="err"),
                             files={"last.pt": ck.FileEntry(step=7, sha256="ab", bytes=10)})
    again = ck.CheckpointMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    assert again.weights_name() == "last.pt"  # best.pt is named but not among the files
    again.files["best.pt"] = ck.FileEntry(step=5, sha256="cd", bytes=10)
    assert again.weights_name() == "best.pt"


def test_sidecar_records_files_best_and_budget(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "blink"
    cdir = run / "checkpoints"
    ck.save_checkpoint(cdir, _state("blinks", 2), ("last.pt", "step_0000002.pt"), selects_best=True)
    meta = ck.read_meta(cdir)
    assert meta.stage == "blinks" and meta.step == 2 and meta.best is None and meta.selects_best
    assert ck.find_stage(tmp_path / "runs", "blinks").weights_path() == cdir / "last.pt"  # none selected yet
    ck.save_checkpoint(cdir, _state("blinks", 4), ("best.pt",),
                       best=ck.BestInfo(file="best.pt", step=4, score=0.1, score_name="rate error"))
    ck.save_checkpoint(cdir, _state("blinks", 6), ("last.pt", "step_0000006.pt"))
    meta = ck.read_meta(cdir)
    assert meta.step == 6 and meta.best.step == 4 and meta.best.score == 0.1
    assert meta.protocol == "speaker-independent" and meta.budget["train_seconds"] == 1.5
    assert sorted(meta.files) == ["best.pt", "last.pt", "step_0000002.pt", "step_0000006.pt"]
    for name, entry in meta.files.items():
        assert entry.sha256 == hashlib.sha256((cdir / name).read_bytes()).hexdigest()
    run_ = ck.find_stage(tmp_path / "runs", "blinks")
    assert run_.weights_path() == cdir / "best.pt"  # the policy: best when the stage selected one
    loaded = run_.load()
    assert loaded.path == cdir / "best.pt" and loaded.step == 4
    prov = loaded.provenance()
    assert prov["sha256"] == hashlib.sha256((cdir / "best.pt").read_bytes()).hexdigest()
    assert prov["path"].endswith("best.pt") and "rate error" in prov["selected"]
    assert run_.load(which="last").step == 6


def test_find_stage_reads_json_not_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, stage in (("lm", "landmarks"), ("blink", "blinks"), ("tex", "texture")):
        ck.save_checkpoint(tmp_path / name / "checkpoints", _state(stage, 1), ("last.pt",))

    def no_torch_load(*a, **k):
        raise AssertionError("find_stage loaded weights")

    monkeypatch.setattr(torch, "load", no_torch_load)
    assert ck.find_stage(tmp_path, "texture").out_dir == tmp_path / "tex"
    assert ck.find_stage(tmp_path / "lm", "landmarks").stage == "landmarks"  # a run folder itself
    assert {r.stage for r in ck.list_runs(tmp_path)} == {"landmarks", "blinks", "texture"}
    with pytest.raises(ck.StageNotFound, match=r"no 'toy' run under .* holds: blinks, landmarks, texture"):
        ck.find_stage(tmp_path, "toy")
    with pytest.raises(FileNotFoundError):  # StageNotFound is also a FileNotFoundError
        ck.find_stage(tmp_path / "lm", "texture")


def test_old_run_without_sidecar_is_found_by_loading_once(tmp_path: Path) -> None:
    cdir = tmp_path / "old" / "checkpoints"
    cdir.mkdir(parents=True)
    torch.save(_state("landmarks", 3), cdir / "last.pt")
    run = ck.find_stage(tmp_path, "landmarks")
    assert run.meta is None and run.weights_path() == cdir / "last.pt"
    assert run.load().step == 3


def test_truncated_and_foreign_files_are_one_sentence(tmp_path: Path) -> None:
    cdir = tmp_path / "lm" / "checkpoints"
    ck.save_checkpoint(cdir, _state("landmarks", 1), ("last.pt",))
    raw = (cdir / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ck.CheckpointError) as info:
        ck.load_checkpoint(cut)
    msg = str(info.value)
    assert "truncated or not a talkface checkpoint" in msg and "retrain or restore it" in msg
    assert "\n" not in msg
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ck.CheckpointError, match="truncated or not a talkface checkpoint"):
        ck.load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ck.CheckpointError, match="not a talkface checkpoint"):
        ck.load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(ck.CheckpointError, match="is a 'landmarks' checkpoint, not 'texture'"):
        ck.load_stage(cdir / "last.pt", "texture")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ck.load_checkpoint(tmp_path / "missing.pt")
    # The run's own file cut short after training: the sidecar's SHA-256 no longer matches.
    (cdir / "last.pt").write_bytes(raw[:-10])
    with pytest.raises(ck.CheckpointError, match="truncated|does not match"):
        ck.find_stage(tmp_path, "landmarks").load()
    # A weight changed in place still unpickles: the SHA-256 check catches it.
    one, two = torch.tensor(1.0).numpy().tobytes(), torch.tensor(2.0).numpy().tobytes()
    assert raw.count(one * 2) == 1
    (cdir / "last.pt").write_bytes(raw.replace(one * 2, two * 2))
    assert ck.load_checkpoint(cdir / "last.pt")["models"]["net"]["w"].tolist() == [2.0, 2.0]
    with pytest.raises(ck.CheckpointError, match="does not match the SHA-256 recorded"):
        ck.load_stage(cdir / "last.pt", "landmarks")
    (cdir / "last.pt").write_bytes(raw)
    assert ck.load_stage(cdir / "last.pt", "landmarks").step == 1


def test_a_damaged_file_names_the_newest_intact_step_file(tmp_path: Path) -> None:
    """last.pt and the newest step file cut short (a full disk, a killed copy): one sentence naming the
    damaged file, torch's reason whole, and the newest intact step_*.pt with the command that uses it."""
    cdir = tmp_path / "lm" / "checkpoints"
    for step in (2, 4, 6):
        ck.save_checkpoint(cdir, _state("landmarks", step), ("last.pt", f"step_{step:07d}.pt"))
    for name in ("last.pt", "step_0000006.pt"):
        raw = (cdir / name).read_bytes()
        (cdir / name).write_bytes(raw[: len(raw) // 2])
    try:
        torch.load(cdir / "last.pt", weights_only=False)
    except Exception as exc:  # torch's own words: its first sentence is what the message quotes
        first = " ".join(str(exc).split()).split(". ")[0]
    with pytest.raises(ck.CheckpointError) as info:
        ck.load_checkpoint(cdir / "last.pt")
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0
    assert msg.startswith(f"{cdir / 'last.pt'} is truncated or not a talkface checkpoint ({first})")
    assert "the newest intact checkpoint beside it is step_0000004.pt (step 4)" in msg
    assert f"`cp {cdir / 'step_0000004.pt'} {cdir / 'last.pt'}`" in msg and "--resume" in msg
    assert "step_0000006" not in msg
    # the same through the run's loader (sidecar check), and without a sidecar (the zip CRCs decide)
    with pytest.raises(ck.CheckpointError, match=r"beside it is step_0000004\.pt \(step 4\)"):
        ck.find_stage(tmp_path, "landmarks").load(which="last")
    (cdir / "checkpoint.json").unlink()
    with pytest.raises(ck.CheckpointError, match=r"beside it is step_0000004\.pt \(step 4\)"):
        ck.load_checkpoint(cdir / "last.pt")
    # a damaged best.pt: pass the step file instead
    (cdir / "best.pt").write_bytes(b"\0" * 10)
    with pytest.raises(ck.CheckpointError, match=r"pass that file instead of best\.pt"):
        ck.load_checkpoint(cdir / "best.pt")


def test_a_long_failure_reason_is_cut_between_words() -> None:
    reason = ck.failure_reason(RuntimeError("word " * 60 + "end. Second sentence."))
    assert reason.endswith("word ...") and len(reason) <= ck.REASON_CHARS + 4
    assert ck.failure_reason(RuntimeError("short one. And more")) == "short one"
    assert ck.failure_reason(EOFError()) == "EOFError"
