"""Study statistics against references: scipy's binomial test, hand-computed alpha, Holm by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from talkface.study.stats import (
    binom_test,
    fisher_exact,
    holm,
    krippendorff_alpha,
    mann_whitney,
    mean_interval,
    wilson_interval,
)


@pytest.mark.parametrize("n", [1, 2, 5, 10, 17, 40, 101, 300])
def test_binom_test_matches_scipy(n):
    for k in range(0, n + 1, 1 if n <= 101 else 7):
        for p in (0.5, 0.3):
            expected = sps.binomtest(k, n, p, alternative="two-sided").pvalue
            assert binom_test(k, n, p) == pytest.approx(expected, rel=1e-9, abs=1e-15), (k, n, p)


def test_binom_test_edges():
    assert math.isnan(binom_test(0, 0))
    assert binom_test(5, 10) == 1.0
    with pytest.raises(ValueError):
        binom_test(11, 10)


def test_wilson_interval_known_values():
    # 8 of 10: Wilson 95 % interval (0.4902, 0.9433) (Newcombe 1998, table I style value)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_wilson_covers_truth_about_95_percent():
    rng = np.random.default_rng(0)
    n, p = 40, 0.7
    hits = sum(lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in rng.binomial(n, p, 4000)))
    assert 0.93 <= hits / 4000 <= 0.97


def test_holm_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04); back in the given order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = holm([math.nan, 0.01])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.01)


def test_mean_interval_is_t_interval():
    x = [1, 2, 3, 4, 5]
    mean, lo, hi = mean_interval(x)
    half = sps.t.ppf(0.975, 4) * np.std(x, ddof=1) / math.sqrt(5)
    assert (mean, lo, hi) == pytest.approx((3, 3 - half, 3 + half))


def test_rank_and_exact_tests():
    assert mann_whitney([1, 1, 1], [1, 1]) == 1.0
    assert math.isnan(mann_whitney([], [1]))
    assert mann_whitney([1, 2, 2, 1, 1, 2], [4, 5, 5, 4, 5, 4]) < 0.01
    assert fisher_exact(9, 10, 1, 10) == pytest.approx(sps.fisher_exact([[9, 1], [1, 9]]).pvalue)


def test_krippendorff_alpha_hand_computed():
    """Two raters, three units: (a, a), (a, b), (b, b).

    Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3, n = 6.
    D_o = (o_ab + o_ba) / n = 2/6; D_e = 2 n_a n_b / (n (n - 1)) = 18/30; alpha = 1 - (1/3)/(3/5) = 4/9.
    """
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)
    # perfect agreement; and a unit with one value is not pairable and changes nothing
    assert krippendorff_alpha([[1, 1], [2, 2], [1, 1, 1], [3]]) == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha([[1], [2]]))
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))


def test_krippendorff_alpha_published_example():
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', the 4-coder, 12-unit example
    with missing values: nominal 0.743, ordinal 0.815, interval 0.849."""
    n = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = [list(u) for u in zip(*coders, strict=True)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
