"""Study designs and balanced assignment: which participant sees what, in which order.

Pure bookkeeping on method and clip names (no media), so balance can be checked exactly in tests.

* ``ab``: an item is (clip, method pair); the two videos are shown left/right (or first/second). Each
  participant judges ``trials`` items (all by default); items are dealt cyclically from a list in
  which every window of ``n_pairs`` consecutive items holds each pair once, so each item and each
  pair is shown equally often; the k-th showing of an item puts its methods in order
  ``(k + clip block) % 2``, so each order is shown equally often for every item and, within a
  participant, alternates across the clips of a pair.
* ``mos`` and ``real-or-fake``: an item is (clip, method), one video per trial; dealt the same way.
* The order of a participant's trials is a row of a balanced (Williams) Latin square over their
  list: across participants every list position appears in every serial position equally often, and
  every ordered neighbour pair equally often (2n rows when n is odd).
* Attention checks: a clip of ``check_method`` (the real recordings, ideally: lips that move) against a
  degraded copy of itself (audio delayed, picture choppy), whose answers are known; inserted at random
  positions, one per segment of the sequence, never first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DESIGNS = ("ab", "mos", "real-or-fake")
LAYOUTS = ("side-by-side", "sequence")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    # the answer an attention check knows: "original" beats the degraded copy (ab, mos), or "fake"
    checkable: bool = True


BUILTIN_QUESTIONS = {
    "ab": {
        "realism": Question("realism", "Which video looks more like a real recording of a person?"),
        "lipsync": Question("lipsync", "In which video do the lip movements match the speech better?"),
        "identity": Question(
            "identity", "In which video does the person keep a more consistent, natural identity?",
            checkable=False,
        ),
    },
    "mos": {
        "realism": Question("realism", "How natural and realistic does this video look?"),
        "lipsync": Question("lipsync", "How well do the lip movements match the speech?"),
        "identity": Question(
            "identity", "How consistent and natural is the person's identity?", checkable=False
        ),
    },
    "real-or-fake": {
        "judgement": Question("judgement", "Is this a real recording or a generated video?"),
    },
}

MOS_LABELS = ["Bad", "Poor", "Fair", "Good", "Excellent"]


@dataclass
class Trial:
    """One screen: ``media`` are keys (method, clip, variant) of the videos shown, in display order."""

    kind: str  # item | check
    media: list[tuple[str, str, str]]
    item: int | None = None
    check: int | None = None
    role: str | None = None  # mos checks: original | degraded
    expected: dict[str, Any] = field(default_factory=dict)

    def to_key(self, tokens: dict[tuple[str, str, str], str]) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "videos": [tokens[m] for m in self.media]}
        if self.item is not None:
            out["item"] = self.item
        if self.check is not None:
            out["check"] = self.check
        if self.role is not None:
            out["role"] = self.role
        if self.expected:
            out["expected"] = self.expected
        return out


@dataclass
class Plan:
    design: str
    methods: list[str]
    clips: list[str]
    check_sources: list[tuple[str, str]]  # (method, clip) per attention check
    items: list[dict[str, Any]]
    participants: list[list[Trial]]

    def media_keys(self) -> list[tuple[str, str, str]]:
        """Every distinct video the plan shows, in a fixed order."""
        seen: dict[tuple[str, str, str], None] = {}
        for trials in self.participants:
            for t in trials:
                for m in t.media:
                    seen.setdefault(m, None)
        return sorted(seen)


def williams_row(n: int, row: int) -> list[int]:
    """Row ``row`` of a balanced Latin square on n (Williams 1949): rows 0..n-1, and for odd n also
    rows n..2n-1, the reverses; every symbol in every position equally often, every ordered pair of
    neighbours equally often over all rows."""
    if n <= 0:
        return []
    base = [0]
    lo, hi = 1, n - 1
    take_lo = True
    while len(base) < n:
        if take_lo:
            base.append(lo)
            lo += 1
        else:
            base.append(hi)
            hi -= 1
        take_lo = not take_lo
    rows = 2 * n if n % 2 else n
    r = row % rows
    seq = [(b + r) % n for b in base]
    if r >= n:
        seq = [(b + r - n) % n for b in base][::-1]
    return seq


def make_plan(
    design: str,
    methods: list[str],
    clips: list[str],
    spare_clips: list[str],
    questions: list[Question],
    participants: int,
    rng: np.random.Generator,
    trials: int | None = None,
    checks: int = 2,
    check_method: str | None = None,
) -> Plan:
    """Assign items to participants, order them, and insert attention checks."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; choose one of {', '.join(DESIGNS)}")
    if design == "ab" and len(methods) < 2:
        raise ValueError("the ab design compares methods in pairs: give at least two --method")
    if participants < 1:
        raise ValueError("need at least one participant")
    clip_order = [clips[i] for i in rng.permutation(len(clips))]
    items: list[dict[str, Any]] = []
    if design == "ab":
        pairs = list(itertools.combinations(methods, 2))
        for j in range(len(clip_order) * len(pairs)):
            items.append({"clip": clip_order[j // len(pairs)], "methods": list(pairs[j % len(pairs)])})
        block = len(pairs)
    else:
        for j in range(len(clip_order) * len(methods)):
            items.append({"clip": clip_order[j // len(methods)], "method": methods[j % len(methods)]})
        block = len(methods)
    n_items = len(items)
    per = n_items if trials is None else trials
    if not 1 <= per <= n_items:
        raise ValueError(f"trials per participant must be 1..{n_items} (the number of items), not {per}")

    shown = [0] * n_items
    lists: list[list[Trial]] = []
    for p in range(participants):
        trial_list: list[Trial] = []
        for t in range(per):
            j = (p * per + t) % n_items
            item = items[j]
            if design == "ab":
                a, b = item["methods"]
                order = (a, b) if (shown[j] + j // block) % 2 == 0 else (b, a)
                media = [(m, item["clip"], "") for m in order]
            else:
                media = [(item["method"], item["clip"], "")]
            shown[j] += 1
            trial_list.append(Trial("item", media, item=j))
        lists.append(trial_list)

    # One fixed relabelling of list positions, then a Williams row per participant.
    relabel = rng.permutation(per).tolist()
    for p in range(participants):
        row = williams_row(per, p)
        lists[p] = [lists[p][relabel[i]] for i in row]

    if check_method is not None and check_method not in methods:
        raise ValueError(f"check method {check_method!r} is not one of the methods {methods}")
    check_sources = _check_sources(check_method or methods[0], clips, spare_clips, checks, rng)
    checked = [q.id for q in questions if q.checkable]
    for p in range(participants):
        lists[p] = _insert_checks(design, lists[p], check_sources, checked, p, rng)
    return Plan(design, list(methods), list(clips), check_sources, items, lists)


def _check_sources(method, clips, spare_clips, checks, rng) -> list[tuple[str, str]]:
    """(method, clip) per check: spare clips (not in the study) first, in random order."""
    if checks <= 0:
        return []
    pool = list(spare_clips) or list(clips)
    chosen = [pool[i] for i in rng.permutation(len(pool))]
    return [(method, chosen[c % len(chosen)]) for c in range(checks)]


def _insert_checks(design, trials, sources, checked, p, rng) -> list[Trial]:
    if not sources:
        return trials
    out = list(trials)
    n = len(trials)
    c_total = len(sources)
    # positions (in the item sequence) before which each check goes, one per segment, never first
    inserts: list[tuple[int, Trial]] = []
    for c, (method, clip) in enumerate(sources):
        orig = (method, clip, "")
        degr = (method, clip, "degraded")
        lo = max(1, (c * n) // c_total)
        hi = max(lo, ((c + 1) * n) // c_total)
        if design == "ab":
            pos = int(rng.integers(lo, hi + 1))
            media = [orig, degr] if (p + c) % 2 == 0 else [degr, orig]
            expected = {q: media.index(orig) for q in checked}
            inserts.append((pos, Trial("check", media, check=c, expected=expected)))
        elif design == "mos":
            a, b = sorted(int(x) for x in rng.integers(lo, hi + 1, size=2))
            first, second = ("original", "degraded") if (p + c) % 2 == 0 else ("degraded", "original")
            for pos, role in ((a, first), (b, second)):
                key = orig if role == "original" else degr
                inserts.append((pos, Trial("check", [key], check=c, role=role)))
        else:
            pos = int(rng.integers(lo, hi + 1))
            inserts.append((pos, Trial("check", [degr], check=c, expected={"judgement": "fake"})))
    # insert from the back so earlier positions stay valid; stable for equal positions
    for pos, trial in sorted(inserts, key=lambda x: x[0], reverse=True):
        out.insert(min(pos, len(out)), trial)
    _separate_mos_pairs(out)
    return out


def _separate_mos_pairs(trials: list[Trial]) -> None:
    """A MOS check's two halves should not sit side by side; swap the second half one step on when
    they do (it stays a check, only its neighbour changes)."""
    for i in range(len(trials) - 1):
        a, b = trials[i], trials[i + 1]
        if a.kind == b.kind == "check" and a.check == b.check and a.role and b.role:
            if i + 2 < len(trials):
                trials[i + 1], trials[i + 2] = trials[i + 2], trials[i + 1]
            elif i >= 1:
                trials[i], trials[i - 1] = trials[i - 1], trials[i]
