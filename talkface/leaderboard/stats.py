"""Paired tests between two methods scored on the same clips.

:func:`wilcoxon_signed_rank` is the Wilcoxon signed-rank test on per-clip differences, written out so
that its rules are stated here (and tested equal to ``scipy.stats.wilcoxon`` with its defaults):

- zero differences are dropped (Wilcoxon's rule, ``zero_method="wilcox"``); ranks of |d| are averaged
  over ties; the statistic is min(R+, R-) (two-sided);
- no ties and no zeros and at most 50 pairs: exact p-value from the null distribution of R+;
- ties or zeros and at most 13 pairs: exact p-value over all 2^n sign flips (what scipy's
  permutation test computes when it can enumerate every flip);
- otherwise: normal approximation with the tie correction and no continuity correction.

:func:`paired_bootstrap` resamples clips (the same clips for both methods) and reports the interval of
a statistic's difference and a two-sided p-value (twice the smaller tail of the resampled
differences around 0), seeded like the results store's intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

EXACT_MAX_N = 50  # scipy's limit for the exact distribution without ties
PERMUTATION_MAX_N = 13  # 2**13 sign flips: scipy enumerates them all below its 9999 resamples


@dataclass(frozen=True)
class PairedTest:
    """One paired comparison: which test, on how many clips, its statistic and p-value."""

    test: str  # "wilcoxon" or "bootstrap"
    n_pairs: int
    statistic: float
    p_value: float
    method: str  # how the p-value was computed: exact, permutation, normal, bootstrap
    diff_low: float = math.nan  # bootstrap only: 95% interval of the difference
    diff_high: float = math.nan

    def describe(self) -> str:
        if not math.isfinite(self.p_value):
            return f"{self.test}: not computable (n={self.n_pairs})"
        return f"{self.test} {p_text(self.p_value)} (n={self.n_pairs})"


def p_text(p: float) -> str:
    """``p=0.012``, ``p<0.001`` or ``p n/a``."""
    text = format_p(p)
    return f"p{text}" if text.startswith("<") else f"p={text}" if text != "n/a" else "p n/a"


def format_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def _average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (1-based, ties averaged) and the sizes of the tie groups."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(x.size, dtype=np.float64)
    sizes = []
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        sizes.append(j - i + 1)
        i = j + 1
    return ranks, np.asarray(sizes, dtype=np.float64)


def _null_counts(weights: np.ndarray) -> np.ndarray:
    """Probability of each integer sum of a random subset of ``weights`` (each in with prob. 1/2)."""
    total = int(weights.sum())
    dist = np.zeros(total + 1, dtype=np.float64)
    dist[0] = 1.0
    for w in weights.astype(int):
        shifted = np.zeros_like(dist)
        shifted[w:] = dist[: dist.size - w]
        dist = (dist + shifted) / 2.0
    return dist


def wilcoxon_signed_rank(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of the paired differences ``a - b`` (NaN pairs dropped)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d_all = a[keep] - b[keep]
    n_pairs = int(d_all.size)
    n_zero = int((d_all == 0).sum())
    d = d_all[d_all != 0]
    n = int(d.size)
    if n == 0:
        return PairedTest("wilcoxon", n_pairs, math.nan, math.nan, "none")
    ranks, ties = _average_ranks(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    statistic = min(r_plus, r_minus)
    has_ties = bool((ties > 1).any())
    if not has_ties and n_zero == 0 and n_pairs <= EXACT_MAX_N:
        dist = _null_counts(np.arange(1, n + 1))
        k = int(round(r_plus))
        p = 2.0 * min(dist[k:].sum(), dist[: k + 1].sum())
        return PairedTest("wilcoxon", n_pairs, statistic, float(min(p, 1.0)), "exact")
    if n_pairs <= PERMUTATION_MAX_N:
        # Ranks are multiples of 1/2: doubled ranks are integers, so the flip distribution is exact.
        doubled = np.round(ranks * 2).astype(int)
        dist = _null_counts(doubled)
        k = int(round(r_plus * 2))
        p = 2.0 * min(dist[k:].sum(), dist[: k + 1].sum())
        return PairedTest("wilcoxon", n_pairs, statistic, float(min(p, 1.0)), "permutation")
    mean = n * (n + 1) / 4.0
    var = (n * (n + 1) * (2 * n + 1) - float((ties**3 - ties).sum()) / 2.0) / 24.0
    if var <= 0:
        return PairedTest("wilcoxon", n_pairs, statistic, math.nan, "normal")
    z = (r_plus - mean) / math.sqrt(var)
    p = math.erfc(abs(z) / math.sqrt(2.0))  # 2 * (1 - Phi(|z|))
    return PairedTest("wilcoxon", n_pairs, statistic, float(min(p, 1.0)), "normal")


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> PairedTest:
    """Bootstrap over clips of ``statistic(a_sample) - statistic(b_sample)``, the same clips for both.

    ``statistic`` maps a (n_boot, n) array of resampled values (and the matching resampled row index
    array) to (n_boot,) values; the default is the mean. The reported statistic is the observed
    difference; the p-value is twice the smaller share of resampled differences on either side of 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n < 2:
        return PairedTest("bootstrap", n, math.nan, math.nan, "bootstrap")
    stat = statistic or (lambda x, idx: x.mean(axis=-1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    diffs = stat(a[idx], idx) - stat(b[idx], idx)
    full = np.arange(n)[None, :]
    observed = float((stat(a[None, :], full) - stat(b[None, :], full))[0])
    p = 2.0 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean()))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return PairedTest("bootstrap", n, observed, float(min(p, 1.0)), "bootstrap", float(lo), float(hi))
