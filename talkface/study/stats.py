"""The statistics of a user study: intervals, tests, multiple-comparison correction, agreement.

Each function is small and checked in tests against a reference (``scipy.stats.binomtest``) or a
hand-computed case (Krippendorff's alpha).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from scipy import stats as sps


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def binom_test(successes: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test: the probability, under ``p``, of an outcome no more likely
    than the one observed (the rule of ``scipy.stats.binomtest``, with its 1e-7 relative slack)."""
    if n <= 0:
        return math.nan
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    pmf = sps.binom.pmf(np.arange(n + 1), n, p)
    observed = pmf[successes]
    if successes == p * n:
        return 1.0
    return float(min(1.0, pmf[pmf <= observed * (1 + 1e-7)].sum()))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given; nan stays nan and is not counted)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval; a single value gives (mean, nan, nan)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 2:
        return (mean, math.nan, math.nan)
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    half = float(sps.t.ppf(0.5 + confidence / 2, x.size - 1)) * sem
    return (mean, mean - half, mean + half)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value for ordinal ratings (nan when either side is empty or
    every rating is the same)."""
    if len(a) == 0 or len(b) == 0:
        return math.nan
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact test of two proportions k1/n1 and k2/n2."""
    if n1 <= 0 or n2 <= 0:
        return math.nan
    return float(sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]], level: str = "nominal") -> float:
    """Krippendorff's alpha for ``units``: one sequence per unit of the values the raters gave it
    (``None`` or absent for a rater who did not rate it). ``level`` is nominal, ordinal or interval.

    Uses the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"):
    each unit with m >= 2 values adds 1/(m-1) for every ordered pair of its values; alpha is
    1 - D_o / D_e. Returns nan when there is no pairable unit or no variation at all.
    """
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"unknown level {level!r}")
    pairable = [[v for v in unit if v is not None] for unit in units]
    pairable = [u for u in pairable if len(u) >= 2]
    if not pairable:
        return math.nan
    values = sorted({v for u in pairable for v in u}, key=_sort_key)
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    o = np.zeros((k, k))
    for unit in pairable:
        m = len(unit)
        counts = np.zeros(k)
        for v in unit:
            counts[index[v]] += 1
        # ordered pairs of different raters: counts_c * counts_k, minus the self-pairs on the diagonal
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = _delta2(values, n_c, level)
    d_o = float((o * delta).sum()) / n
    d_e = float((np.outer(n_c, n_c) * delta).sum()) / (n * (n - 1))
    if d_e == 0:
        return math.nan
    return 1.0 - d_o / d_e


def _sort_key(v: Hashable) -> tuple[int, object]:
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def _delta2(values: list, n_c: np.ndarray, level: str) -> np.ndarray:
    k = len(values)
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level == "interval":
        x = np.asarray(values, dtype=float)
        return (x[:, None] - x[None, :]) ** 2
    # ordinal: squared sum of the marginal counts between the two ranks, less half of each end
    cum = np.concatenate([[0.0], np.cumsum(n_c)])
    d = np.zeros((k, k))
    for c in range(k):
        for e in range(k):
            lo, hi = min(c, e), max(c, e)
            d[c, e] = (cum[hi + 1] - cum[lo] - (n_c[c] + n_c[e]) / 2) ** 2
    return d
