"""The training machinery: deterministic data order, exact resume, checkpoint round trip, config restore."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from talkface.store.checkpoints import find_stage, load_checkpoint, read_meta
from talkface.train.loop import (
    Stage,
    StreamBatchSampler,
    StreamDataset,
    TrainContext,
    TrainSettings,
    run_training,
)

torch.set_num_threads(1)


class _Noisy(Dataset):
    """Items that need randomness: x is fixed, the target gets noise from the per-item rng."""

    def __init__(self, n: int = 13) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def getitem_seeded(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        noise = torch.tensor(rng.normal(size=1), dtype=torch.float32)
        return {"x": self.x[index], "y": self.x[index].sum(0, keepdim=True) + 0.1 * noise, "i": index}


@dataclass
class _ToyConfig:
    hidden: int = 8
    dropout: float = 0.2


class _ToyStage(Stage):
    """Dropout (torch RNG) + seeded items + Adam state: everything resume has to restore."""

    name = "toy"

    def __init__(self, config: _ToyConfig | None = None) -> None:
        self.config = config or _ToyConfig()

    def setup(self, settings: TrainSettings, resume_state: dict[str, Any] | None) -> None:
        if resume_state is not None:
            self.config = _ToyConfig(**resume_state["config"])

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def build_models(self) -> dict[str, torch.nn.Module]:
        c = self.config
        net = torch.nn.Sequential(torch.nn.Linear(4, c.hidden), torch.nn.Tanh(), torch.nn.Dropout(c.dropout),
                                  torch.nn.Linear(c.hidden, 1))
        return {"net": net}

    def build_optimizers(self, models, settings):
        return {"net": torch.optim.Adam(models["net"].parameters(), lr=settings.lr)}

    def train_dataset(self) -> Dataset:
        return _Noisy()

    def training_step(self, ctx: TrainContext, batch: Any) -> dict[str, float]:
        net, opt = ctx.models["net"], ctx.optimizers["net"]
        opt.zero_grad()
        loss = ((net(batch["x"]) - batch["y"]) ** 2).mean() + 1e-3 * torch.randn(()).abs()
        ctx.fabric.backward(loss)
        opt.step()
        return {"loss": float(loss.detach())}

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        torch.randn(5)  # consuming RNG in validation must not change the training stream
        return {"val": float(ctx.models["net"](torch.zeros(1, 4)).sum())}


def _settings(out: Path, steps: int, resume: bool = False, **kw: Any) -> TrainSettings:
    base = dict(out_dir=out, max_steps=steps, batch_size=5, devices="1", accelerator="cpu", seed=7,
                resume=resume, ckpt_every=1000, log_every=2, val_every=3, image_every=1000, lr=1e-2)
    base.update(kw)
    return TrainSettings(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["models"]["net"]


def test_sampler_order_is_a_pure_function_of_seed_and_step() -> None:
    """Starting the sampler at step k yields exactly the batches k, k+1, ... of a run from step 0."""
    full = StreamBatchSampler(13, 5, seed=3)
    it = iter(full)
    first = [next(it) for _ in range(6)]
    it2 = iter(StreamBatchSampler(13, 5, seed=3, start_step=4))
    assert [next(it2) for _ in range(2)] == first[4:6]
    # Every epoch is a permutation of all items: positions 0..12 map to 13 distinct indices.
    ds = StreamDataset(_Noisy(), seed=3)
    epoch0 = [ds[p]["i"] for p in range(13)]
    assert sorted(epoch0) == list(range(13))
    epoch1 = [ds[p]["i"] for p in range(13, 26)]
    assert sorted(epoch1) == list(range(13)) and epoch1 != epoch0
    # Two DDP ranks split one global batch without overlap.
    r0 = next(iter(StreamBatchSampler(13, 5, seed=3, rank=0, world_size=2)))
    r1 = next(iter(StreamBatchSampler(13, 5, seed=3, rank=1, world_size=2)))
    assert set(r0).isdisjoint(r1) and sorted(r0 + r1) == list(range(10))


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    """2N steps in one go == N steps, then --resume for N more (weights and optimiser state bitwise)."""
    n = 7
    run_training(_ToyStage(), _settings(tmp_path / "full", 2 * n), quiet=True)
    run_training(_ToyStage(), _settings(tmp_path / "split", n), quiet=True)
    run_training(_ToyStage(), _settings(tmp_path / "split", 2 * n, resume=True), quiet=True)
    full = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    split = load_checkpoint(tmp_path / "split/checkpoints/last.pt")
    assert full["step"] == split["step"] == 2 * n
    for k, v in full["models"]["net"].items():
        assert torch.equal(v, split["models"]["net"][k]), k
    exp_avg_full = full["optimizers"]["net"]["state"][0]["exp_avg"]
    assert torch.equal(exp_avg_full, split["optimizers"]["net"]["state"][0]["exp_avg"])
    # A different seed gives different weights: the comparison above can fail.
    run_training(_ToyStage(), _settings(tmp_path / "other", 2 * n, seed=8), quiet=True)
    other = _weights(tmp_path / "other/checkpoints/last.pt")
    assert not torch.equal(other["0.weight"], full["models"]["net"]["0.weight"])


def test_checkpoint_round_trip_and_config_restore(tmp_path: Path) -> None:
    stage = _ToyStage(_ToyConfig(hidden=5, dropout=0.0))
    run_training(stage, _settings(tmp_path / "run", 4, ckpt_every=2), quiet=True)
    ckpt_dir = tmp_path / "run/checkpoints"
    assert sorted(p.name for p in ckpt_dir.glob("*.pt")) == ["last.pt", "step_0000002.pt", "step_0000004.pt"]
    ckpt = load_checkpoint(ckpt_dir / "last.pt")
    assert ckpt["stage"] == "toy" and ckpt["step"] == 4 and ckpt["seed"] == 7
    assert ckpt["config"] == {"hidden": 5, "dropout": 0.0}
    assert "talkface_version" in ckpt and "rng" in ckpt
    # A fresh model loaded from the checkpoint computes what the saved weights compute by hand.
    restored = _ToyStage(_ToyConfig(**ckpt["config"]))
    net = restored.build_models()["net"]
    net.load_state_dict(ckpt["models"]["net"])
    net.eval()
    x = torch.randn(3, 4)
    w = ckpt["models"]["net"]
    by_hand = torch.tanh(x @ w["0.weight"].T + w["0.bias"]) @ w["3.weight"].T + w["3.bias"]
    torch.testing.assert_close(net(x), by_hand)
    # Resume restores the config from the checkpoint, not from the (different) fresh stage.
    resumed = _ToyStage(_ToyConfig(hidden=99))
    run_training(resumed, _settings(tmp_path / "run", 6, resume=True), quiet=True)
    assert resumed.config.hidden == 5
    assert find_stage(tmp_path, "toy").weights_path() == ckpt_dir / "last.pt"
    with pytest.raises(FileNotFoundError, match="no 'blinks' run under"):
        find_stage(tmp_path, "blinks")
    # The sidecar: stage, step, seed, config, budget (wall time summed over the resumed runs), files.
    meta = read_meta(ckpt_dir)
    assert meta.stage == "toy" and meta.step == 6 and meta.seed == 7 and meta.config == {"hidden": 5,
                                                                                         "dropout": 0.0}
    assert meta.budget["max_steps"] == 6 and meta.budget["steps"] == 6 and meta.budget["train_seconds"] > 0
    assert sorted(meta.files) == ["last.pt", "step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    assert meta.best is None and not meta.selects_best
    # A second run into the same folder without --resume is refused rather than overwriting.
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(_ToyStage(), _settings(tmp_path / "run", 2), quiet=True)
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 2 and '"seed": 7' in lines[0]


class _ScoredToy(_ToyStage):
    """Validation scores follow a fixed script by step, so the best step is known in advance."""

    SCRIPT = {3: 0.9, 6: 0.4, 9: 0.7, 12: 0.5, 15: 0.3, 18: 0.6}

    def validate(self, ctx: TrainContext) -> dict[str, float]:
        return {"score": self.SCRIPT[ctx.step]}

    selection_name = "the scripted score"

    def selection_score(self, metrics: dict[str, float]) -> float | None:
        return metrics["score"]


def test_best_checkpoint_follows_the_selection_score_across_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_training(_ScoredToy(), _settings(out, 9), quiet=True)
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["step"] == 6 and best["best_score"] == 0.4  # 0.9 at 3, 0.4 at 6, 0.7 at 9
    run_training(_ScoredToy(), _settings(out, 12, resume=True), quiet=True)
    assert load_checkpoint(out / "checkpoints" / "best.pt")["step"] == 6  # 0.5 at 12 does not beat 0.4
    run_training(_ScoredToy(), _settings(out, 18, resume=True), quiet=True)
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["step"] == 15 and best["best_score"] == 0.3
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 18
    # checkpoint.json says which file is best, by which score, at which step; generation loads it.
    meta = read_meta(out / "checkpoints")
    assert meta.selects_best and meta.best.step == 15 and meta.best.score == 0.3 and meta.step == 18
    assert meta.best.score_name == "the scripted score"
    run = find_stage(tmp_path, "toy")
    assert run.weights_path() == out / "checkpoints" / "best.pt"
    assert run.load().provenance()["step"] == 15
    # stages without a selection score write no best.pt
    run_training(_ToyStage(), _settings(tmp_path / "plain", 6), quiet=True)
    assert not (tmp_path / "plain" / "checkpoints" / "best.pt").exists()


def test_time_budget_stops_with_a_checkpoint_and_resume_keeps_the_clock(tmp_path: Path) -> None:
    """max_seconds ends a run (validated and saved, stopped_by 'time'); the clock is summed over resumes,
    so a resumed run whose time is spent does nothing."""
    out = tmp_path / "run"
    result = run_training(_ToyStage(), _settings(out, 50, max_seconds=0.0), quiet=True)
    assert result.stopped_by == "time" and result.step == 1 and result.last_validation
    meta = read_meta(out / "checkpoints")
    assert meta.step == 1 and meta.budget["stopped_by"] == "time" and meta.budget["max_seconds"] == 0.0
    again = run_training(_ToyStage(), _settings(out, 50, resume=True, max_seconds=0.0), quiet=True)
    assert again.step == 1 and again.stopped_by == "time"
    done = run_training(_ToyStage(), _settings(out, 3, resume=True), quiet=True)
    assert done.step == 3 and done.stopped_by == "steps"
    assert read_meta(out / "checkpoints").budget["train_seconds"] >= meta.budget["train_seconds"]
