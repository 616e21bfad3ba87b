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
