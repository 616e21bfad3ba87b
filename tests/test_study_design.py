"""Balanced assignment: counts per pair, order, item and serial position; attention checks."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from talkface.study.design import BUILTIN_QUESTIONS, make_plan, williams_row

METHODS = ["m1", "m2", "m3"]
CLIPS = ["c1", "c2", "c3", "c4"]
AB_QUESTIONS = list(BUILTIN_QUESTIONS["ab"].values())


def _items(trials):
    return [t for t in trials if t.kind == "item"]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_williams_square_is_balanced(n):
    rows = [williams_row(n, r) for r in range(2 * n if n % 2 else n)]
    for row in rows:
        assert sorted(row) == list(range(n))
    for pos in range(n):  # every symbol in every position equally often
        counts = Counter(row[pos] for row in rows)
        assert len(set(counts.values())) == 1 and len(counts) == n
    if n > 1:  # every ordered neighbour pair equally often
        pairs = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
        assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1


def test_ab_every_participant_sees_everything_balanced():
    plan = make_plan("ab", METHODS, CLIPS, ["c5"], AB_QUESTIONS, participants=6,
                     rng=np.random.default_rng(1), checks=2)
    n_items = len(CLIPS) * 3
    order_per_item = Counter()
    for trials in plan.participants:
        items = _items(trials)
        assert sorted(t.item for t in items) == list(range(n_items))
        # within a participant each pair is shown in each order equally often (2 of 4 clips each way)
        per_pair = Counter((tuple(sorted(m[0] for m in t.media)), t.media[0][0]) for t in items)
        assert set(per_pair.values()) == {2}
        for t in items:
            order_per_item[(t.item, t.media[0][0])] += 1
    # across participants every item is shown in each order equally often (3 of 6)
    assert set(order_per_item.values()) == {3} and len(order_per_item) == 2 * n_items
    # each pair is shown equally often overall
    pairs = Counter(tuple(sorted(m[0] for m in t.media)) for ts in plan.participants for t in _items(ts))
    assert set(pairs) == set(itertools.combinations(METHODS, 2)) and len(set(pairs.values())) == 1


def test_ab_subset_dealing_is_balanced():
    # 12 items, 6 per participant, 4 participants: every item shown twice, once in each order
    plan = make_plan("ab", METHODS, CLIPS, [], AB_QUESTIONS, participants=4, rng=np.random.default_rng(2),
                     trials=6, checks=0)
    shows = Counter(t.item for ts in plan.participants for t in ts)
    assert set(shows.values()) == {2} and len(shows) == 12
    orders = Counter((t.item, t.media[0][0]) for ts in plan.participants for t in ts)
    assert set(orders.values()) == {1}
    for ts in plan.participants:  # 6 trials = each of the 3 pairs twice
        assert set(Counter(tuple(sorted(m[0] for m in t.media)) for t in ts).values()) == {2}


def test_sequence_positions_follow_a_latin_square():
    # every participant has the same 12 items: across 12 participants each item sits in each position once
    plan = make_plan("ab", METHODS, CLIPS, [], AB_QUESTIONS, participants=12, rng=np.random.default_rng(3),
                     checks=0)
    for pos in range(12):
        assert sorted(ts[pos].item for ts in plan.participants) == list(range(12))


def test_mos_and_real_or_fake_items():
    for design in ("mos", "real-or-fake"):
        qs = list(BUILTIN_QUESTIONS[design].values())
        plan = make_plan(design, METHODS, CLIPS, ["c9"], qs, participants=3, rng=np.random.default_rng(4),
                         trials=4, checks=1)
        shows = Counter(t.item for ts in plan.participants for t in _items(ts))
        assert set(shows.values()) == {1} and len(shows) == 12  # 3 x 4 = 12 items, each once
        for ts in plan.participants:  # any 3 consecutive items in the list cover the 3 methods
            assert len(_items(ts)) == 4
            assert len({t.media[0][0] for t in _items(ts)}) == 3


def test_attention_checks_have_known_answers_and_are_never_first():
    plan = make_plan("ab", METHODS, CLIPS, ["spare1", "spare2"], AB_QUESTIONS, participants=8,
                     rng=np.random.default_rng(5), checks=2)
    assert {clip for _, clip in plan.check_sources} <= {"spare1", "spare2"}
    assert {method for method, _ in plan.check_sources} == {"m1"}  # default: the first method
    sides = Counter()
    for ts in plan.participants:
        checks = [t for t in ts if t.kind == "check"]
        assert len(checks) == 2 and ts[0].kind == "item"
        for t in checks:
            variants = [m[2] for m in t.media]
            assert sorted(variants) == ["", "degraded"]
            original = variants.index("")
            assert t.expected == {"realism": original, "lipsync": original}  # identity is not checkable
            sides[original] += 1
    assert sides[0] == sides[1]  # the original is on the left as often as on the right

    mos = make_plan("mos", METHODS, CLIPS, ["spare1"], list(BUILTIN_QUESTIONS["mos"].values()),
                    participants=2, rng=np.random.default_rng(6), checks=1)
    for ts in mos.participants:
        roles = [t.role for t in ts if t.kind == "check"]
        assert sorted(roles) == ["degraded", "original"]
        idx = [i for i, t in enumerate(ts) if t.kind == "check"]
        assert idx[1] - idx[0] > 1  # the two halves are not neighbours


def test_plan_is_deterministic_for_a_generator_seed():
    a = make_plan("ab", METHODS, CLIPS, ["s"], AB_QUESTIONS, 5, np.random.default_rng(9))
    b = make_plan("ab", METHODS, CLIPS, ["s"], AB_QUESTIONS, 5, np.random.default_rng(9))
    media_a = [[t.media for t in ts] for ts in a.participants]
    assert media_a == [[t.media for t in ts] for ts in b.participants]


def test_bad_requests():
    with pytest.raises(ValueError, match="at least two"):
        make_plan("ab", ["only"], CLIPS, [], AB_QUESTIONS, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="trials per participant"):
        make_plan("ab", METHODS, CLIPS, [], AB_QUESTIONS, 2, np.random.default_rng(0), trials=99)
    with pytest.raises(ValueError, match="check method"):
        make_plan("ab", METHODS, CLIPS, [], AB_QUESTIONS, 2, np.random.default_rng(0), check_method="m9")
    with pytest.raises(ValueError, match="unknown design"):
        make_plan("abc", METHODS, CLIPS, [], AB_QUESTIONS, 2, np.random.default_rng(0))
