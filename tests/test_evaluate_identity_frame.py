"""evaluate compares identity against the frame generation takes the identity from, not frame 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from talkface.evaluate.runner import identity_frame_index


def _template() -> np.ndarray:
    path = Path(__file__).resolve().parents[1] / "talkface" / "data" / "face_template_68.json"
    data = json.loads(path.read_text())
    points = data["points"]
    return np.asarray(points, np.float64) * 100.0


def test_identity_frame_skips_an_open_mouth_and_shut_eyes() -> None:
    base = _template()
    frames = np.repeat(base[None], 10, axis=0)
    frames[:, 57, 1] += 1.0  # every frame's mouth a little open ...
    frames[:, 66, 1] += 1.0
    frames[0, 57, 1] += 12.0  # ... frame 0 wide open (what evaluate used to compare against)
    frames[0, 66, 1] += 10.0
    frames[3, 57, 1] -= 1.0  # frame 3: closed mouth, but eyes shut (upper lids onto the lower)
    frames[3, 66, 1] -= 1.0
    frames[3, [37, 38, 43, 44], 1] = frames[3, [41, 40, 47, 46], 1]
    frames[6, 57, 1] -= 1.0  # frame 6: closed mouth, eyes open: the identity frame
    frames[6, 66, 1] -= 1.0
    assert identity_frame_index(frames) == 6


def test_no_landmarks_falls_back_to_frame_zero() -> None:
    assert identity_frame_index(np.full((5, 68, 2), np.nan)) == 0
