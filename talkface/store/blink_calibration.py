"""The blink calibration record: ``<blink run>/calibration.json``, written by the all-stages training run
(:mod:`talkface.train.blink_calibration`) and read by generation, which applies its amplitude only while
the blink and texture weights it was measured with are the ones loaded.

Fields: ``amplitude`` (chosen), ``rule``, ``real_blinks_per_min``, ``generated_blinks_per_min`` (per
amplitude, keyed by ``format(amplitude, "g")``), ``clips``, ``failed``, ``minutes``, ``seed``,
``protocol``, ``detector``, ``blink_rule``, ``blinks_sha256``, ``texture_sha256``,
``blink_stage_amplitude``, ``composite`` (the rule the frames were composed by; records written before
it existed used ``face-parts``; both rules take the eyes from the texture stage, so a calibration
applies under either), ``applicable`` and ``why`` (a calibration that found no blinks, in the real
crops or in the generated frames at the chosen amplitude, measured nothing: it is kept as a record of
why, and :func:`read_calibration` does not offer it for applying), ``clips_asked``, ``stopped_by``
("time" when the budget ended it early), ``seconds``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from talkface.utils import atomic

CALIBRATION_FILE = "calibration.json"


def calibration_path(blink_run_dir: str | os.PathLike) -> Path:
    return Path(blink_run_dir) / CALIBRATION_FILE


def write_calibration(blink_run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` atomically beside the blink stage's checkpoints."""
    path = calibration_path(blink_run_dir)
    atomic.write_json(path, record)
    return path


class CalibrationUnreadable(ValueError):
    """A calibration file that exists but is not readable JSON."""


def read_record(blink_run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The record as written (applicable or not), or None when the blink run has none;
    :class:`CalibrationUnreadable` when damaged."""
    path = calibration_path(blink_run_dir)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise CalibrationUnreadable(f"{path} is not readable JSON") from None


def applicable(record: dict[str, Any]) -> bool:
    """Whether a record's amplitude may be applied (False: it found no blinks; ``why`` says more)."""
    return bool(record.get("applicable", True))


def read_calibration(blink_run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The record to apply, or None when the blink run has none or its record is not applicable (see
    :func:`read_record` for that one); :class:`CalibrationUnreadable` when damaged."""
    record = read_record(blink_run_dir)
    return record if record is not None and applicable(record) else None


def measured_with(record: dict[str, Any], blinks_sha256: str, texture_sha256: str) -> bool:
    """Whether the record was measured with exactly these blink and texture weights."""
    return record.get("blinks_sha256") == blinks_sha256 and record.get("texture_sha256") == texture_sha256


def hold_frames(record: dict[str, Any]) -> int:
    """How many frames each closure was held when the record was measured (records written before
    generation held closures: 0)."""
    return int(record.get("hold_frames", 0))


def chosen_rate(record: dict[str, Any]) -> float:
    """A calibration's blink rate in generated frames at the amplitude it chose."""
    return float(record["generated_blinks_per_min"][format(record["amplitude"], "g")])
