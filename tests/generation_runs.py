"""Tiny trained checkpoints of all three stages for the generation and baseline tests.

Each stage is trained for 2 steps by the shared Fabric loop on the ``prepared_grid`` fixture (CPU).
The runs are made once per pytest session in a fixed folder under the session's base temp folder, so
tests/test_generate.py and tests/test_baselines.py share them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY = dict(gen_widths=(8, 16, 16, 32, 32), gen_res_blocks=1, disc_widths=(8, 16, 32, 32))


def trained_runs(prepared_grid: Path, tmp_path_factory) -> Path:
    """runs/{lm,blink,tex}, each stage trained for 2 steps (made on first use, then reused)."""
    import torch

    from talkface.models.texture import TextureConfig
    from talkface.train.blinks import BlinkStage
    from talkface.train.landmarks import LandmarkStage
    from talkface.train.loop import TrainSettings, run_training
    from talkface.train.texture import TextureStage

    root = tmp_path_factory.getbasetemp() / "generation_runs"
    done = root / "done"
    if done.exists():
        return root
    torch.set_num_threads(1)
    stages = {"lm": LandmarkStage(prepared_grid), "blink": BlinkStage(prepared_grid),
              "tex": TextureStage(prepared_grid, config=TextureConfig(val_max_samples=4, **TINY))}
    for name, stage in stages.items():
        settings = TrainSettings(out_dir=root / name, max_steps=2, batch_size=2, accelerator="cpu",
                                 ckpt_every=2, val_every=2, image_every=2, lr=2e-4)
        run_training(stage, settings, quiet=True)
    done.write_text("ok")
    return root


def usable_part(data: Path) -> tuple[str, list[str]]:
    """A part of the dataset's own protocol with usable clips: test, else val."""
    from talkface.store.dataset import Dataset

    parts = Dataset.open(data).parts()
    part = "test" if parts.test else "val"
    return part, list(parts[part])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of uint8 videos/images by scikit-image (the independent reference)."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(np.asarray(a), np.asarray(b), data_range=255))


def one_line(output: str) -> str:
    """CLI output with the terminal's line wrapping undone (for substring checks)."""
    return " ".join(output.split())
