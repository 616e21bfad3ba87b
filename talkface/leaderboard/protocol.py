"""The protocol guard: methods are ranked together only when they were scored the same way.

Rows are grouped by (dataset, split protocol, part, crop size, reference set), from each method's run
record, and each column by its metric's definition (variant, resolution, detector, weights, options).
A difference refuses the table with a message naming it, unless ``allow_mixed``, which keeps the
table and footnotes the difference. Fields no run record holds (results written before talkface
recorded protocols) cannot be checked: the table says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from talkface.leaderboard.load import (
    PROTOCOL_FIELDS,
    UNKNOWN,
    LeaderboardError,
    MethodResults,
    MetricSamples,
)

#: Definition fields that describe a metric without changing its numbers.
DESCRIPTIVE_DEFINITION_FIELDS = frozenset({"doc", "reference", "talkface_version", "direction", "units"})


class ProtocolMismatch(LeaderboardError):
    """Methods scored under different protocols would be ranked together."""


def _fmt_groups(groups: dict[str, list[str]]) -> str:
    return "; ".join(f"{value} ({', '.join(names)})" for value, names in sorted(groups.items()))


def protocol_differences(methods: Sequence[MethodResults]) -> list[str]:
    """One sentence per protocol field on which the methods differ (an unknown value counts)."""
    out = []
    for name, label in PROTOCOL_FIELDS:
        groups: dict[str, list[str]] = {}
        for m in methods:
            v = m.protocol.value(name)
            groups.setdefault(UNKNOWN if v is None else v, []).append(m.name)
        if len(groups) > 1:
            text = f"{label} differs: {_fmt_groups(groups)}"
            if name == "reference_set":
                text += _clip_difference(methods)
            out.append(text)
    return out


def _clip_difference(methods: Sequence[MethodResults]) -> str:
    """Which clips the methods were scored on differ (the reference id hashes the scored clip ids)."""
    scored = {
        m.name: frozenset(c for s in m.metrics.values() for c in (*s.values, *s.failures)) for m in methods
    }
    union = frozenset().union(*scored.values())
    lacking = {name: sorted(union - clips) for name, clips in scored.items() if union - clips}
    if not lacking:
        return " (same clip ids: the prepared datasets differ)"
    parts = []
    for name, missing in sorted(lacking.items()):
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        parts.append(f"{name} lacks {shown}")
    return " (scored clips differ: " + "; ".join(parts) + ")"


def definition_differences(column: tuple[str, str], samples: dict[str, MetricSamples]) -> list[str]:
    """One sentence per definition field on which the methods' rows of one column differ."""
    fields = sorted(
        {k for s in samples.values() for k in s.definition if k not in DESCRIPTIVE_DEFINITION_FIELDS}
    )
    out = []
    for f in fields:
        groups: dict[str, list[str]] = {}
        for method, s in samples.items():
            groups.setdefault(repr(s.definition.get(f)), []).append(method)
        if len(groups) > 1:
            out.append(f"{column[0]}:{column[1]} {f} differs: {_fmt_groups(groups)}")
    return out


def check(
    methods: Sequence[MethodResults],
    columns: dict[tuple[str, str], dict[str, MetricSamples]],
    allow_mixed: bool = False,
) -> list[str]:
    """Refuse mixed protocols (``ProtocolMismatch``) or, with ``allow_mixed``, return the footnotes.

    Also returns the notes every table needs: fields nobody recorded, metrics present in several
    variants, different talkface versions.
    """
    notes: list[str] = []
    diffs = protocol_differences(methods)
    for key, samples in columns.items():
        diffs += definition_differences(key, samples)
    if diffs and not allow_mixed:
        raise ProtocolMismatch(
            "refusing to rank methods scored under different protocols:\n  - "
            + "\n  - ".join(diffs)
            + "\nEvaluate every method on the same prepared dataset, protocol and part with the same "
            "metric settings, or pass --allow-mixed to build the table anyway with the difference "
            "footnoted."
        )
    for d in diffs:
        notes.append(f"Mixed protocols (--allow-mixed): {d}. Ranks across these rows are not like for like.")
    unrecorded = [m.name for m in methods if not m.protocol.recorded]
    if unrecorded:
        missing = [
            label for name, label in PROTOCOL_FIELDS if all(m.protocol.value(name) is None for m in methods)
        ]
        what = ", ".join(missing) if missing else "some protocol fields"
        notes.append(
            f"Protocol unknown for {', '.join(unrecorded)}: their run records predate protocol recording "
            f"(older results); {what} could not be checked. Re-run `talkface evaluate` to record them."
        )
    by_metric: dict[str, list[str]] = {}
    for metric, variant in columns:
        by_metric.setdefault(metric, []).append(variant)
    for metric, variants in sorted(by_metric.items()):
        if len(variants) > 1:
            notes.append(
                f"{metric} appears in {len(variants)} variants ({', '.join(sorted(variants))}): each is its "
                "own column, and methods are ranked only within a variant."
            )
    versions: dict[str, list[str]] = {}
    for m in methods:
        versions.setdefault(m.talkface_version or UNKNOWN, []).append(m.name)
    if len(versions) > 1:
        notes.append(f"Results written by different talkface versions: {_fmt_groups(versions)}.")
    return notes


def caption(methods: Sequence[MethodResults]) -> str:
    """The shared protocol in one line (fields that differ are listed as 'mixed')."""
    parts = []
    for name, label in PROTOCOL_FIELDS:
        values = {m.protocol.value(name) for m in methods}
        if len(values) > 1:
            parts.append(f"{label}: mixed")
        else:
            v = values.pop()
            parts.append(f"{label}: {UNKNOWN if v is None else v}")
    return "; ".join(parts)
