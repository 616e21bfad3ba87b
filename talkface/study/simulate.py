"""Synthetic participants: response files for a study key, from known method strengths.

For piloting the analysis before real answers exist (does the report read right? how many participants
does a given effect need?) and for tests that check the analysis recovers a known truth.

Each method has a strength ``s``. In ``ab`` a participant prefers A over B with probability
``sigmoid(s_A - s_B)`` (Bradley-Terry); in ``mos`` a rating is ``round(3 + s + noise)`` clipped to
1..5; in ``real-or-fake`` a video is called real with probability ``sigmoid(s)``. An attentive
participant answers attention checks correctly; an inattentive one answers everything at random.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from talkface.study.page import RESPONSE_FORMAT


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def simulate(key: dict[str, Any], strengths: dict[str, float], seed: int = 0, inattentive: float = 0.0,
             participants: list[int] | None = None, noise: float = 0.7) -> list[dict[str, Any]]:
    """One response document per participant (1-based numbers; default: every slot in the key)."""
    rng = np.random.default_rng(seed)
    design = key["design"]
    qids = [q["id"] for q in key["questions"]]
    options = {q["id"]: [o["value"] for o in q["options"]] for q in key["questions"]}
    docs = []
    for p in participants or range(1, len(key["participants"]) + 1):
        careless = bool(rng.random() < inattentive)
        clock = 1_700_000_000_000 + p * 10_000_000
        trials = []
        for index, a in enumerate(key["participants"][p - 1]["trials"]):
            meta = [key["media"][v] for v in a["videos"]]
            duration_ms = 1000 * sum(m["duration_s"] for m in meta)
            shown = clock
            answered = shown + int(duration_ms) + int(rng.integers(1500, 6000))
            clock = answered + int(rng.integers(100, 600))
            answers = {}
            for q in qids:
                if careless:
                    answers[q] = options[q][int(rng.integers(len(options[q])))]
                    continue
                answers[q] = _answer(design, a, meta, strengths, rng, noise)
            trials.append({"index": index, "videos": list(a["videos"]), "answers": answers,
                           "shown_at_ms": shown, "answered_at_ms": answered,
                           "duration_ms": answered - shown, "plays": [1] * len(meta)})
        docs.append({"format": RESPONSE_FORMAT, "version": 1, "study_id": key["study_id"], "design": design,
                     "participant": p, "started_at": "2026-01-01T00:00:00Z",
                     "finished_at": "2026-01-01T01:00:00Z", "reloads": 0, "user_agent": "talkface-simulate",
                     "trials": trials})
    return docs


def _answer(design, trial, meta, strengths, rng, noise):
    degraded = [m["variant"] == "degraded" for m in meta]
    s = [strengths.get(m["method"], 0.0) for m in meta]
    if design == "ab":
        if any(degraded):  # an attentive participant sees the degraded copy for what it is
            return degraded.index(False)
        return 0 if rng.random() < _sigmoid(s[0] - s[1]) else 1
    if design == "mos":
        if degraded[0]:
            return 1
        low = 2 if trial["kind"] == "check" else 1
        return int(min(5, max(low, round(3 + s[0] + rng.normal(0, noise)))))
    if degraded[0]:
        return "fake"
    return "real" if rng.random() < _sigmoid(s[0]) else "fake"
