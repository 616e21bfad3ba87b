"""Leaderboard plots (matplotlib, Agg; PNG, SVG or PDF by the output's suffix).

- ``bar``: one metric's mean per method with its 95% bootstrap interval (the table's numbers);
- ``box`` / ``violin``: the per-clip distribution of one metric per method;
- ``blinks``: blink rate and mean blink duration per method beside the real data's;
- ``scatter``: per-clip values of two methods on the clips both have, with the y = x line.

The same protocol guard as the tables applies. Figures are built with :class:`matplotlib.figure.Figure`
and the Agg canvas directly, so no GUI backend or global pyplot state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talkface.leaderboard import protocol as protocol_guard
from talkface.leaderboard.load import LeaderboardError, MethodResults, MetricSamples
from talkface.leaderboard.table import (
    DEFAULT_UNRANKED,
    LABELS,
    UNITS,
    _cell,
    _direction,
    select_columns,
)

KINDS = ("bar", "box", "violin", "blinks", "scatter")
SUFFIXES = (".png", ".svg", ".pdf")
COLOR_MEASURED = "#3366cc"
COLOR_UNRANKED = "#999999"
COLOR_REAL = "#2ca02c"
COLOR_POINTS = "#dc3912"
BLINK_METRICS = ("blink_rate", "blink_duration")
DPI = 100


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _order(methods: Sequence[MethodResults], wanted: Sequence[str] | None) -> list[MethodResults]:
    by_name = {m.name: m for m in methods}
    if wanted:
        missing = [w for w in wanted if w not in by_name]
        if missing:
            raise LeaderboardError(
                f"--methods: {', '.join(missing)} not in the results (have {', '.join(by_name)})"
            )
        return [by_name[w] for w in wanted]
    return sorted(methods, key=lambda m: (m.name not in DEFAULT_UNRANKED, m.name))


def _column(methods: Sequence[MethodResults], metric: str | None) -> tuple[str, str]:
    if not metric:
        raise LeaderboardError("--metric is needed for this kind of plot (e.g. --metric lmd_mouth)")
    available = sorted({k for m in methods for k in m.metrics})
    keys = select_columns(available, [metric])
    if len(keys) > 1:
        raise LeaderboardError(
            f"--metric {metric}: {len(keys)} variants in the results ({', '.join(v for _, v in keys)}); "
            f"name one as {keys[0][0]}:VARIANT"
        )
    return keys[0]


def _guard(methods: Sequence[MethodResults], keys: Sequence[tuple[str, str]], allow_mixed: bool) -> list[str]:
    cols = {k: {m.name: m.metrics[k] for m in methods if k in m.metrics} for k in keys}
    return protocol_guard.check(methods, cols, allow_mixed=allow_mixed)


def _text(name: str) -> str:
    """A method name as literal text for matplotlib (``$`` would start mathtext)."""
    return name.replace("$", r"\$")


def _label(key: tuple[str, str], direction: str) -> str:
    metric, variant = key
    unit = f" ({UNITS[metric]})" if metric in UNITS else ""
    arrow = {"higher": "↑", "lower": "↓", "closer": "→ real"}[direction]
    return f"{LABELS.get(metric, metric)}{unit} {arrow}"


def _real(samples: Sequence[MetricSamples]):
    refs: dict[str, float] = {}
    for s in samples:
        for clip, v in s.reference_values.items():
            refs.setdefault(clip, v)
    if not refs:
        return None
    return _cell(np.array([refs[c] for c in sorted(refs)], dtype=np.float64))


def make_plot(
    results: Sequence[MethodResults],
    kind: str,
    out: str | Path,
    metric: str | None = None,
    methods: Sequence[str] | None = None,
    allow_mixed: bool = False,
) -> Path:
    """Draw one plot of loaded ``results`` and write it to ``out``; returns the path.

    ``methods`` picks and orders the methods shown (exactly two for ``scatter``).
    """
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise LeaderboardError(f"--out {out}: use a .png, .svg or .pdf file name")
    if kind not in KINDS:
        raise LeaderboardError(f"kind {kind!r}: choose one of {', '.join(KINDS)}")
    chosen = _order(results, methods)
    if kind == "scatter":
        if len(chosen) != 2 or not methods:
            raise LeaderboardError("--kind scatter needs exactly two methods: --methods a,b")
        fig = _scatter(chosen, _column(chosen, metric), allow_mixed)
    elif kind == "blinks":
        fig = _blinks(chosen, allow_mixed)
    else:
        fig = _distribution(chosen, _column(chosen, metric), kind, allow_mixed)
    out.parent.mkdir(parents=True, exist_ok=True)
    from talkface.utils import atomic

    with atomic.atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lower().lstrip("."), dpi=DPI)
    return out


def _distribution(methods: Sequence[MethodResults], key: tuple[str, str], kind: str, allow_mixed: bool):
    present = [m for m in methods if key in m.metrics]
    if not present:
        raise LeaderboardError(f"no method has {key[0]}:{key[1]}")
    notes = _guard(present, [key], allow_mixed)
    samples = [m.metrics[key] for m in present]
    direction = _direction(samples, key[0])
    names = [m.name for m in present]
    colors = [COLOR_UNRANKED if n in DEFAULT_UNRANKED else COLOR_MEASURED for n in names]
    fig = _figure(max(4.0, 1.1 * len(names) + 1.5), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    if kind == "bar":
        cells = [_cell(s.array(), len(s.failures)) for s in samples]
        means = np.array([c.mean for c in cells])
        lo = np.array([c.mean - c.low if math.isfinite(c.low) else 0.0 for c in cells])
        hi = np.array([c.high - c.mean if math.isfinite(c.high) else 0.0 for c in cells])
        ax.bar(x, means, width=0.6, color=colors, yerr=np.vstack([lo, hi]), capsize=4,
               error_kw={"ecolor": "black", "elinewidth": 1.2})
        bottom = min(0.0, float(np.nanmin(means - lo)))
        ax.set_ylim(bottom=bottom)
    elif kind == "box":
        data = [s.array() for s in samples]
        parts = ax.boxplot(data, positions=x, widths=0.6, patch_artist=True, showfliers=True)
        for patch, c in zip(parts["boxes"], colors, strict=True):
            patch.set_facecolor(c)
            patch.set_edgecolor("black")
        for med in parts["medians"]:
            med.set_color("black")
    else:
        data = [s.array() for s in samples]
        keep = [i for i, d in enumerate(data) if d.size >= 2]
        if keep:
            parts = ax.violinplot([data[i] for i in keep], positions=x[keep], widths=0.7, showmedians=True)
            for i, body in zip(keep, parts["bodies"], strict=True):
                body.set_facecolor(colors[i])
                body.set_edgecolor("black")
                body.set_alpha(0.9)
            for part in ("cmedians", "cmins", "cmaxes", "cbars"):
                if part in parts:
                    parts[part].set_color("black")
    if direction == "closer":
        real = _real(samples)
        if real is not None:
            ax.axhline(real.mean, color=COLOR_REAL, linestyle="--", linewidth=1.5, label="real data")
            ax.legend(loc="best", frameon=False)
    ax.set_xticks(x)
    ax.set_xticklabels([_text(n) for n in names], rotation=20, ha="right")
    ax.set_ylabel(_label(key, direction))
    what = {"bar": "mean and 95% interval over clips", "box": "per-clip values", "violin": "per-clip values"}
    title = f"{key[0]}:{key[1]} ({what[kind]})"
    if notes and allow_mixed and any(n.startswith("Mixed") for n in notes):
        title += " [mixed protocols]"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _blink_keys(methods: Sequence[MethodResults]) -> list[tuple[str, str]]:
    keys = []
    for metric in BLINK_METRICS:
        variants = sorted({v for m in methods for (name, v) in m.metrics if name == metric})
        if not variants:
            raise LeaderboardError(f"no {metric} in the results (evaluate with the blink metrics)")
        default = "ear-adaptive0.75-min2"
        keys.append((metric, default if default in variants else variants[0]))
    return keys


def _blinks(methods: Sequence[MethodResults], allow_mixed: bool):
    keys = _blink_keys(methods)
    present = [m for m in methods if all(k in m.metrics for k in keys)]
    if not present:
        raise LeaderboardError("no method has both blink_rate and blink_duration")
    _guard(present, keys, allow_mixed)
    names = [m.name for m in present] + ["real data"]
    fig = _figure(max(7.0, 1.6 * len(names) + 1.5), 4.2)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, 2, i + 1)
        samples = [m.metrics[key] for m in present]
        cells = [_cell(s.array()) for s in samples]
        real = _real(samples)
        cells.append(real if real is not None else _cell(np.array([])))
        colors = [COLOR_UNRANKED if n in DEFAULT_UNRANKED else COLOR_MEASURED for n in names[:-1]]
        colors.append(COLOR_REAL)
        means = np.array([c.mean for c in cells])
        lo = np.array([c.mean - c.low if math.isfinite(c.low) else 0.0 for c in cells])
        hi = np.array([c.high - c.mean if math.isfinite(c.high) else 0.0 for c in cells])
        x = np.arange(len(names))
        ax.bar(x, np.nan_to_num(means), width=0.6, color=colors, yerr=np.vstack([lo, hi]), capsize=4,
               error_kw={"ecolor": "black", "elinewidth": 1.2})
        for xi, m in zip(x, means, strict=True):
            if not math.isfinite(m):
                ax.text(xi, 0, "no value", ha="center", va="bottom", fontsize=8, color="#555555")
        if real is not None and math.isfinite(real.mean):
            ax.axhline(real.mean, color=COLOR_REAL, linestyle="--", linewidth=1.2)
        ax.set_xticks(x)
        ax.set_xticklabels([_text(n) for n in names], rotation=20, ha="right")
        ax.set_ylabel(_label(key, "closer"))
        ax.set_title(f"{key[0]} ({key[1]})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _scatter(methods: Sequence[MethodResults], key: tuple[str, str], allow_mixed: bool):
    from talkface.leaderboard.stats import p_text, wilcoxon_signed_rank

    a, b = methods
    for m in (a, b):
        if key not in m.metrics:
            raise LeaderboardError(f"method {m.name!r} has no {key[0]}:{key[1]}")
    _guard([a, b], [key], allow_mixed)
    sa, sb = a.metrics[key], b.metrics[key]
    clips = sorted(set(sa.values) & set(sb.values))
    if not clips:
        raise LeaderboardError(f"{a.name} and {b.name} share no clip with a {key[0]} value")
    x, y = sa.array(clips), sb.array(clips)
    direction = _direction([sa, sb], key[0])
    fig = _figure(5.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    lo = float(min(x.min(), y.min()))
    hi = float(max(x.max(), y.max()))
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=1, linestyle=":")
    ax.scatter(x, y, s=28, color=COLOR_POINTS, edgecolors="none")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    label = _label(key, direction)
    ax.set_xlabel(f"{_text(a.name)}: {label}")
    ax.set_ylabel(f"{_text(b.name)}: {label}")
    test = wilcoxon_signed_rank(x, y)
    ax.set_title(
        f"{key[0]}:{key[1]}, {len(clips)} clips (dotted: y = x)\nWilcoxon signed-rank {p_text(test.p_value)}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
