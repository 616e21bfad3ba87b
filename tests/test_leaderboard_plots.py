"""`talkface leaderboard plot`: the files exist and their pixels show the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from test_leaderboard_support import CLIPS, PROTOCOL, definition, write_golden, write_method
from typer.testing import CliRunner

from talkface.cli import app
from talkface.leaderboard.load import LeaderboardError, load_results
from talkface.leaderboard.plots import COLOR_MEASURED, COLOR_POINTS, COLOR_REAL, make_plot
from talkface.store.results import ResultRow, ResultsStore


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])


def _mask(path: Path, hex_color: str, alpha: float = 1.0, tol: float = 0.04) -> np.ndarray:
    import matplotlib.image

    img = matplotlib.image.imread(str(path))[..., :3].astype(np.float64)
    target = alpha * _rgb(hex_color) + (1 - alpha) * 1.0  # drawn over a white background
    return np.all(np.abs(img - target) < tol, axis=-1)


def _groups(mask: np.ndarray, min_pixels: int = 1, gap: int = 1) -> list[np.ndarray]:
    """Runs of image columns holding at least ``min_pixels`` masked pixels (``gap``: largest step
    inside one run, so a thin black line drawn across a shape does not split it)."""
    counts = mask.sum(axis=0)
    cols = np.flatnonzero(counts >= min_pixels)
    if cols.size == 0:
        return []
    return np.split(cols, np.flatnonzero(np.diff(cols) > gap) + 1)


def _heights(mask: np.ndarray, min_pixels: int = 1) -> list[float]:
    counts = mask.sum(axis=0)
    return [float(np.median(counts[g])) for g in _groups(mask, min_pixels)]


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = tmp_path_factory.mktemp("plots") / "results"
    for name, psnr in (("a", 10.0), ("b", 30.0), ("c", 20.0)):
        write_method(root, name, {"psnr": (psnr, 1.0), "lmd_mouth": (psnr / 10, 0.05)})
    return load_results([root])


def test_bar_heights_follow_the_means(three, tmp_path: Path) -> None:
    out = make_plot(three, kind="bar", metric="psnr", out=tmp_path / "bar.png")
    heights = _heights(_mask(out, COLOR_MEASURED))
    assert len(heights) == 3  # a, b, c from left to right
    assert heights[1] > heights[2] > heights[0]
    assert heights[1] / heights[0] == pytest.approx(3.0, rel=0.08)  # bars start at 0: height ∝ mean
    assert heights[2] / heights[0] == pytest.approx(2.0, rel=0.08)


def test_methods_option_orders_the_bars(three, tmp_path: Path) -> None:
    out = make_plot(three, kind="bar", metric="psnr", methods=["b", "c", "a"], out=tmp_path / "bar.png")
    heights = _heights(_mask(out, COLOR_MEASURED))
    assert heights == sorted(heights, reverse=True)


@pytest.mark.parametrize(("kind", "alpha"), [("box", 1.0), ("violin", 0.9)])
def test_distributions_sit_at_the_values(three, tmp_path: Path, kind: str, alpha: float) -> None:
    out = make_plot(three, kind=kind, metric="psnr", out=tmp_path / f"{kind}.png")
    mask = _mask(out, COLOR_MEASURED, alpha=alpha, tol=0.06)
    groups = _groups(mask, min_pixels=3, gap=5)
    assert len(groups) == 3
    rows = np.arange(mask.shape[0])[:, None]
    centers = [float((rows * mask[:, g]).sum() / mask[:, g].sum()) for g in groups]  # image y: down
    a, b, c = centers
    assert b < c < a  # b (30 dB) highest, then c (20), then a (10)
    assert (a - c) == pytest.approx(c - b, rel=0.15)  # equal steps in value, equal steps in pixels


def test_blinks_beside_the_real_data(tmp_path: Path) -> None:
    methods = load_results([write_golden(tmp_path / "results")])
    out = make_plot(methods, kind="blinks", out=tmp_path / "blinks.png")
    green = _mask(out, COLOR_REAL)
    real_bars = _groups(green, min_pixels=8)  # the dashed real-data line adds only a few per column
    assert len(real_bars) == 2  # one real-data bar per panel (rate, duration)
    width = green.shape[1]
    left = _mask(out, COLOR_MEASURED)[:, : width // 2]
    rate_heights = _heights(left, min_pixels=2)  # XSS 60/min, mean-face 30, ours 16 (static-frame 0)
    real_rate = float(np.median(green.sum(axis=0)[real_bars[0]]))
    assert len(rate_heights) == 3
    assert rate_heights[0] / real_rate == pytest.approx(60 / 20, rel=0.1)
    assert rate_heights[1] / real_rate == pytest.approx(30 / 20, rel=0.1)
    assert rate_heights[2] / real_rate == pytest.approx(16 / 20, rel=0.1)


def _exact(root: Path, name: str, values: list[float]) -> None:
    rows = [ResultRow(name, CLIPS[i], "psnr", "colour-range255-cap100", v, definition=definition("psnr"))
            for i, v in enumerate(values)]
    ResultsStore(root).replace_method(name, rows, {"protocol": PROTOCOL})


def test_scatter_places_each_clip(tmp_path: Path) -> None:
    _exact(tmp_path, "low", [0.0, 1.0, 2.0, 3.0])
    _exact(tmp_path, "high", [7.0, 8.0, 9.0, 10.0])
    methods = load_results([tmp_path])
    out = make_plot(methods, kind="scatter", metric="psnr", methods=["low", "high"], out=tmp_path / "s.png")
    red = _mask(out, COLOR_POINTS, tol=0.08)
    _, n_points = ndimage.label(red)
    assert n_points == 4
    ys, xs = np.nonzero(red)
    h, w = red.shape
    assert xs.mean() < w / 2 and ys.mean() < h / 2  # x small, y large: upper left, above y = x
    swapped = make_plot(methods, kind="scatter", metric="psnr", methods=["high", "low"],
                        out=tmp_path / "t.png")
    ys, xs = np.nonzero(_mask(swapped, COLOR_POINTS, tol=0.08))
    assert xs.mean() > w / 2 and ys.mean() > h / 2  # lower right, below y = x
    with pytest.raises(LeaderboardError, match="exactly two methods"):
        make_plot(methods, kind="scatter", metric="psnr", out=tmp_path / "u.png")


def test_svg_holds_one_bar_per_method(three, tmp_path: Path) -> None:
    out = make_plot(three, kind="bar", metric="lmd_mouth", out=tmp_path / "bar.svg")
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert text.count(f"fill: {COLOR_MEASURED}") == 3


def test_plot_refuses_mixed_protocols_and_odd_names(tmp_path: Path) -> None:
    write_method(tmp_path / "a", "cost $5$ model", {"psnr": (30.0, 1.0)})
    write_method(tmp_path / "b", "other", {"psnr": (27.0, 1.0)}, protocol={**PROTOCOL, "part": "val"})
    methods = load_results([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(LeaderboardError, match="part differs"):
        make_plot(methods, kind="bar", metric="psnr", out=tmp_path / "x.png")
    out = make_plot(methods, kind="bar", metric="psnr", out=tmp_path / "x.png", allow_mixed=True)
    assert out.stat().st_size > 0
    with pytest.raises(LeaderboardError, match=".png, .svg or .pdf"):
        make_plot(methods, kind="bar", metric="psnr", out=tmp_path / "x.gif", allow_mixed=True)


def test_cli_plot(three, tmp_path: Path) -> None:
    root = tmp_path / "r"
    write_method(root, "a", {"psnr": (30.0, 1.0)})
    write_method(root, "b", {"psnr": (20.0, 1.0)})
    runner = CliRunner()
    res = runner.invoke(app, ["leaderboard", "plot", str(root), "--metric", "psnr",
                              "--out", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["leaderboard", "plot", str(root), "--kind", "bar",
                              "--out", str(tmp_path / "q.png")])
    assert res.exit_code == 2 and "--metric is needed" in res.output
    res = runner.invoke(app, ["leaderboard", "plot", str(root), "--metric", "psnr", "--kind", "pie",
                              "--out", str(tmp_path / "q.png")])
    assert res.exit_code == 2 and "--kind 'pie'" in res.output
