"""The blink calibration is applied only to the very weights it was measured with."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from talkface.generation.generator import apply_calibration
from talkface.store.blink_calibration import CALIBRATION_FILE


def _generator(blinks_sha: str, texture_sha: str) -> SimpleNamespace:
    blink_model = SimpleNamespace(config=SimpleNamespace(amplitude=1.0))
    return SimpleNamespace(blink_model=blink_model, texture=object(),
                           provenance={"checkpoints": {"blinks": {"sha256": blinks_sha},
                                                       "texture": {"sha256": texture_sha}}})


def test_applied_when_both_weights_match_and_refused_otherwise(tmp_path: Path) -> None:
    assert apply_calibration(_generator("a", "b"), tmp_path) is None  # no calibration: nothing happens
    record = {"amplitude": 1.4, "blinks_sha256": "a", "texture_sha256": "b", "real_blinks_per_min": 40.0,
              "generated_blinks_per_min": {"1.4": 38.0}}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(record))
    gen = _generator("a", "b")
    done = apply_calibration(gen, tmp_path)
    assert done is not None and done["applied"] and gen.blink_model.config.amplitude == 1.4
    for shas in (("a", "other"), ("other", "b")):  # a retrained stage invalidates the calibration
        gen = _generator(*shas)
        done = apply_calibration(gen, tmp_path)
        assert done is not None and not done["applied"] and "other blink or texture weights" in done["why"]
        assert gen.blink_model.config.amplitude == 1.0
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    done = apply_calibration(_generator("a", "b"), tmp_path)
    assert done is not None and not done["applied"] and "not readable" in done["why"]


def test_a_calibration_that_found_no_blinks_is_never_applied_and_says_why(tmp_path: Path) -> None:
    record = {"amplitude": 1.8, "blinks_sha256": "a", "texture_sha256": "b", "real_blinks_per_min": 52.0,
              "generated_blinks_per_min": {"1.8": 0.0}, "applicable": False,
              "why": "no blinks found in the generated frames at any amplitude"}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(record))
    gen = _generator("a", "b")
    done = apply_calibration(gen, tmp_path)
    assert done is not None and not done["applied"] and "no blinks found" in done["why"]
    assert gen.blink_model.config.amplitude == 1.0


def test_the_smallest_amplitude_within_a_quarter_of_the_real_rate_is_chosen() -> None:
    """By hand: real 45.8/min; x1.0 gives 50.8 (11% high: matched) and x1.8 43.3 (closer): x1.0, the
    shallower closure. None matched (real 80): the closest, x1.6; two equally close: the smaller."""
    from talkface.train.blink_calibration import choose_amplitude

    rates = {1.0: 50.8, 1.2: 57.5, 1.4: 55.8, 1.6: 58.3, 1.8: 43.3}
    assert choose_amplitude(rates, 45.8) == 1.0
    assert choose_amplitude(rates, 80.0) == 1.6
    assert choose_amplitude({1.0: 28.3, 1.2: 34.2, 1.4: 41.7}, 44.2) == 1.2  # 34.2 is 22.6% low
    assert choose_amplitude({1.0: 10.0, 1.2: 30.0}, 20.0) == 1.0  # both 10/min off, both 50%: the smaller
