"""Several speakers and unseen identities: the unseen-identity protocol, the identity-image rule
(another clip of the same speaker) and speaker-balanced training data, checked by hand-computed cases
and on real GRID clips."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from talkface.store.identity_source import identity_clip
from talkface.store.splits import hash_fraction, unseen_identity_part, unseen_identity_rule
from talkface.train.data import balance_by_speaker


def test_balance_by_speaker_gives_every_speaker_the_same_share():
    items = [("a", i) for i in range(20)] + [("b", i) for i in range(8)] + [("c", i) for i in range(3)]
    items += [("d", 0)]
    balanced = balance_by_speaker(items, lambda item: item[0])
    # b repeated to a's 20; c at most 4 passes (MAX_SPEAKER_REPEAT); d, under a tenth of a's items, once
    assert Counter(s for s, _ in balanced) == {"a": 20, "b": 20, "c": 12, "d": 1}
    assert set(balanced) == set(items)  # nothing invented, nothing lost
    assert [i for s, i in balanced if s == "c"] == [0, 1, 2] * 4  # cycled in order
    one = [("a", i) for i in range(3)]
    assert balance_by_speaker(one, lambda item: item[0]) == one


def test_unseen_identity_rule_by_hand():
    rule = unseen_identity_rule(["s4", " s2 ", ""])
    assert rule["test_speakers"] == ["s2", "s4"] and rule["val_fraction"] == 0.1
    assert unseen_identity_part("s4_bbaf2a", "s4", rule) == "test"
    for clip in ("s1_bbaf2n", "s1_bgah3a", "s1_lbbe1s", "s1_pwij3p"):
        expected = "val" if hash_fraction(clip, 2020) >= 0.9 else "train"
        assert unseen_identity_part(clip, "s1", rule) == expected
    with pytest.raises(ValueError, match="needs --test-speakers"):
        unseen_identity_rule([])


class _Records:
    """Just what identity_clip reads of a Dataset."""

    def __init__(self, rows):
        self.rows = [SimpleNamespace(clip_id=c, speaker=s) for c, s in rows]

    def record(self, clip_id):
        return next(r for r in self.rows if r.clip_id == clip_id)

    def records(self, usable_only=False):
        return self.rows


def test_identity_comes_from_the_next_clip_of_the_same_speaker():
    ds = _Records([("s1_a", "s1"), ("s1_c", "s1"), ("s1_b", "s1"), ("s4_x", "s4")])
    assert identity_clip(ds, "s1_a") == ("s1_b", ())
    assert identity_clip(ds, "s1_b") == ("s1_c", ())
    assert identity_clip(ds, "s1_c") == ("s1_a", ())  # wraps round
    assert identity_clip(ds, "s4_x") == ("s4_x", ("identity_same_clip",))  # the speaker's only clip
    assert identity_clip(ds, "s1_a", "same-clip") == ("s1_a", ())
    with pytest.raises(ValueError, match="--identity-from"):
        identity_clip(ds, "s1_a", "random")


def test_prepare_unseen_identity_keeps_test_speakers_out_of_training(grid_root, tmp_path):
    from talkface.cli import app
    from talkface.store.dataset import Dataset

    out = tmp_path / "ds"
    args = ["prepare", "grid", str(grid_root), "--speakers", "s2,s23", "--out", str(out),
            "--protocol", "unseen-identity", "--test-speakers", "s23"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    parts = Dataset.open(out).parts("unseen-identity")
    assert set(parts.test) == {"s23_priazn"}
    assert set(parts.train) | set(parts.val) == {"s2_swwp2s"}
    again = CliRunner().invoke(app, [*args[:-1], "s2"])
    assert again.exit_code == 2 and "made with test speakers s23" in " ".join(again.output.split())
    half = CliRunner().invoke(app, [*args[:-4], "--test-speakers", "s23"])
    assert half.exit_code == 2 and "--test-speakers goes with --protocol unseen-identity" in half.output
