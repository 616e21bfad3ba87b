"""The paired tests: Wilcoxon signed-rank equal to scipy.stats.wilcoxon, paired bootstrap sanity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.leaderboard.stats import format_p, p_text, paired_bootstrap, wilcoxon_signed_rank


def _same_as_scipy(a: np.ndarray, b: np.ndarray) -> None:
    ours = wilcoxon_signed_rank(a, b)
    ref = scipy.stats.wilcoxon(a, b)
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-9)
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 13, 14, 30, 50, 51, 200])
def test_wilcoxon_matches_scipy_without_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.normal(size=n)
    _same_as_scipy(a, a + rng.normal(0.4, 1.0, size=n))  # exact up to 50, normal above


@pytest.mark.parametrize("n", [4, 9, 14, 25, 80])
def test_wilcoxon_matches_scipy_with_ties_and_zeros(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    a = rng.integers(0, 4, size=n).astype(float)
    b = rng.integers(0, 4, size=n).astype(float)  # many ties and zero differences
    if np.all(a == b):
        b[0] += 1
    _same_as_scipy(a, b)  # permutation (exact) up to 13 pairs, normal with tie correction above


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-20, 20), st.integers(-20, 20)), min_size=14, max_size=70
    ).filter(lambda pairs: any(x != y for x, y in pairs))
)
def test_wilcoxon_matches_scipy_property(pairs: list[tuple[int, int]]) -> None:
    # 14+ pairs: scipy's exact and normal paths (its permutation path, slow, is covered above)
    a = np.array([p[0] for p in pairs], dtype=float) / 4
    b = np.array([p[1] for p in pairs], dtype=float) / 4
    _same_as_scipy(a, b)


def test_wilcoxon_drops_nan_pairs_and_handles_all_zero() -> None:
    a = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 7.0])
    b = np.array([0.5, 1.0, 3.0, np.nan, 4.0, 5.5])
    res = wilcoxon_signed_rank(a, b)
    assert res.n_pairs == 4
    assert res.p_value == pytest.approx(scipy.stats.wilcoxon([1, 2, 5, 7], [0.5, 1, 4, 5.5]).pvalue)
    same = wilcoxon_signed_rank(np.ones(5), np.ones(5))
    assert math.isnan(same.p_value) and "not computable" in same.describe()
    with pytest.raises(ValueError, match="differ in length"):
        wilcoxon_signed_rank(np.ones(3), np.ones(4))


def test_paired_bootstrap() -> None:
    a = np.linspace(0, 1, 30)
    far = paired_bootstrap(a + 1.0, a)
    assert far.statistic == pytest.approx(1.0) and far.p_value == 0.0
    assert far.diff_low == pytest.approx(1.0) and far.diff_high == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = paired_bootstrap(a + rng.normal(0, 0.3, 30), a + rng.normal(0, 0.3, 30))
    assert noise.p_value > 0.05 and noise.diff_low < 0 < noise.diff_high
    assert paired_bootstrap(a, a, seed=1).p_value == 1.0  # identical samples: every difference is 0
    assert math.isnan(paired_bootstrap(np.ones(1), np.ones(1)).p_value)


def test_p_value_text() -> None:
    assert format_p(0.0001) == "<0.001" and p_text(0.0001) == "p<0.001"
    assert p_text(0.0423) == "p=0.042" and p_text(float("nan")) == "p n/a"
