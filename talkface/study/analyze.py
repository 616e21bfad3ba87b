"""``talkface study analyze``: responses + key -> statistics, a Markdown report and plots.

Every response file is checked against the key before it counts: it must be JSON in the page's
format, name this study, a participant the key knows, show exactly the videos the key assigned to
that participant in that order, answer every question with an allowed value, and have possible
timings (no trial answered sooner than its videos take to play, no clock running backwards). A file
that fails is listed with the reason and skipped. Participants who fail more attention checks than
allowed are excluded and counted.

Two rules stop the analysis instead (one ``error:`` line, exit 2), because skipping would change the
numbers without anyone deciding it:

* **A damaged file** (empty, truncated or otherwise not JSON, not UTF-8) is refused, naming it: get it
  again from the participant, or leave it out of the command to analyse without it.
* **Two files for one participant**, both valid, with different answers (the page taken twice, on
  two devices, or a reload that started over) are refused, naming both files and when each was
  finished: which attempt counts (usually the first: the second was made by someone who had seen the
  videos) is the analyst's decision, made by passing only that file. Byte-identical copies are one
  answer: the first in name order is kept and each copy is listed as skipped, saying which file was
  kept.

Statistics (see :mod:`talkface.study.stats`):

* ``ab``: per question and method pair, the rate at which the first method of the pair is preferred,
  its 95 % Wilson interval, an exact two-sided binomial test against 0.5 and Holm-adjusted p-values
  over the pairs of that question.
* ``mos``: per question and method, the mean rating with a 95 % t interval; per pair of methods a
  two-sided Mann-Whitney U test, Holm-adjusted over the pairs of that question.
* ``real-or-fake``: per method, the rate judged real with a Wilson interval and a binomial test
  against 0.5; per pair, Fisher's exact test, Holm-adjusted.
* Agreement: Krippendorff's alpha per question over the items (nominal for choices, ordinal and
  interval for ratings), which allows each participant to judge a different subset.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkface.study.export import KEY_FORMAT
from talkface.study.page import RESPONSE_FORMAT
from talkface.study.sources import StudyError
from talkface.study.stats import (
    binom_test,
    fisher_exact,
    holm,
    krippendorff_alpha,
    mann_whitney,
    mean_interval,
    wilson_interval,
)
from talkface.utils import atomic
from talkface.utils.names import file_name

TIMING_SLACK = 0.9  # a trial must take at least this fraction of its videos' total duration
MAX_FILE_BYTES = 20 * 1024 * 1024


@dataclass
class Skipped:
    file: str
    reason: str


#: What a study key holds (written by ``study export``); a key lacking any of them is damaged.
KEY_FIELDS = ("study_id", "design", "questions", "method_order", "clips", "media", "participants")
KEY_TODO = ("restore it from your copy, or run the same `talkface study export` command again (the same "
            "inputs and --seed write the same key)")


def load_key(path: str | Path) -> dict[str, Any]:
    """The study key; a :class:`StudyError` naming the file when it is missing, damaged or not a key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StudyError(f"{path}: cannot read the study key ({exc.strerror or exc})") from None
    try:
        key = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StudyError(f"{path} is damaged ({_damage(raw, exc)}): {KEY_TODO}") from None
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise StudyError(f"{path} is not a talkface study key (written by `talkface study export`)")
    missing = [f for f in KEY_FIELDS if f not in key]
    if missing:
        raise StudyError(f"{path} is damaged (no {', '.join(missing)}): {KEY_TODO}")
    return key


def _damage(raw: bytes, exc: BaseException) -> str:
    """Why bytes are not JSON, in a few words: ``empty (0 bytes)``, else the decoder's message (cut)."""
    if not raw:
        return "empty (0 bytes)"
    text = " ".join(str(exc).split())
    return text if len(text) <= 100 else text[:97] + "..."


# --------------------------------------------------------------------------------------------------
# Reading and checking response files


class _Reject(Exception):
    pass


RESPONSES_TODO = ("get the file again from the participant, or leave it out of the command to analyse "
                  "without it")


def read_responses(key: dict[str, Any], paths: list[str | Path]) -> tuple[list[dict], list[Skipped]]:
    """The response files that pass every check, and the others with the reason each was skipped.

    A damaged file, or two valid files with different answers for one participant, is a
    :class:`StudyError` (see the module docstring).
    """
    accepted: list[dict] = []
    skipped: list[Skipped] = []
    by_participant: dict[int, str] = {}
    by_digest: dict[str, str] = {}
    conflicts: dict[int, list[tuple[str, dict]]] = {}
    for path in sorted({str(p) for p in paths}):
        try:
            raw = Path(path).read_bytes()
            if len(raw) > MAX_FILE_BYTES:
                raise _Reject(f"larger than {MAX_FILE_BYTES // 1024 // 1024} MB")
            digest = hashlib.sha256(raw).hexdigest()
            if digest in by_digest:
                raise _Reject(f"duplicate: the same bytes as {by_digest[digest]}, which is kept")
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise StudyError(f"{path} is damaged ({_damage(raw, exc)}): {RESPONSES_TODO}") from None
            _check_response(key, doc)
            p = doc["participant"]
            if p in by_participant:
                conflicts.setdefault(p, []).append((path, doc))
                continue
        except _Reject as exc:
            skipped.append(Skipped(path, str(exc)))
            continue
        except OSError as exc:
            skipped.append(Skipped(path, f"cannot read ({exc.strerror or exc})"))
            continue
        by_participant[p] = path
        by_digest[digest] = path
        doc["_file"] = path
        accepted.append(doc)
    if conflicts:
        first = {doc["participant"]: doc for doc in accepted}
        p, others = next(iter(sorted(conflicts.items())))
        files = [(by_participant[p], first[p]), *others]
        listed = ", ".join(f"{f} ({_finished(d)})" for f, d in files)
        more = sorted(set(conflicts) - {p})
        also = (f"; participant{'s' if len(more) > 1 else ''} {', '.join(map(str, more))} also answered in "
                "several files") if more else ""
        raise StudyError(f"participant {p} answered in {len(files)} different files: {listed}"
                         f"{also}; pass only the file that counts (usually the first attempt) and leave "
                         "the other out")
    return accepted, skipped


def _finished(doc: dict) -> str:
    """When a response file says it was finished (the page's own clock), for a message."""
    at = doc.get("finished_at")
    return f"finished {str(at)[:40]}" if at else "no finish time"


def _check_response(key: dict[str, Any], doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("format") != RESPONSE_FORMAT:
        raise _Reject("malformed: not a talkface study responses file")
    if doc.get("study_id") != key["study_id"]:
        raise _Reject(f"wrong study: study id {str(doc.get('study_id'))[:40]!r}, the key is "
                      f"{key['study_id']!r}")
    p = doc.get("participant")
    n_participants = len(key["participants"])
    if type(p) is not int or not 1 <= p <= n_participants:
        raise _Reject(f"tampered: participant {str(p)[:20]!r} is not 1..{n_participants}")
    assigned = key["participants"][p - 1]["trials"]
    trials = doc.get("trials")
    if not isinstance(trials, list):
        raise _Reject("malformed: no list of trials")
    if len(trials) != len(assigned):
        raise _Reject(f"incomplete: {len(trials)} of {len(assigned)} trials")
    allowed = {q["id"]: [o["value"] for o in q["options"]] for q in key["questions"]}
    media = key["media"]
    previous_end = -math.inf
    for i, (t, a) in enumerate(zip(trials, assigned, strict=True)):
        if not isinstance(t, dict):
            raise _Reject(f"malformed: trial {i + 1} is not an object")
        if t.get("index") != i:
            raise _Reject(f"tampered: trial {i + 1} has index {str(t.get('index'))[:20]!r}")
        if t.get("videos") != a["videos"]:
            raise _Reject(f"tampered: trial {i + 1} shows other videos than the key assigned")
        answers = t.get("answers")
        if not isinstance(answers, dict) or set(answers) != set(allowed):
            raise _Reject(f"malformed: trial {i + 1} does not answer exactly the study's questions")
        for qid, value in answers.items():
            if type(value) not in (int, str) or value not in allowed[qid]:
                raise _Reject(f"tampered: trial {i + 1} answers {qid!r} with {str(value)[:20]!r}")
        shown, answered = t.get("shown_at_ms"), t.get("answered_at_ms")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                   for x in (shown, answered)):
            raise _Reject(f"malformed: trial {i + 1} has no timestamps")
        need_ms = 1000 * TIMING_SLACK * sum(media[v]["duration_s"] for v in a["videos"])
        if answered - shown < need_ms:
            raise _Reject(f"impossible timings: trial {i + 1} answered {answered - shown:.0f} ms after it "
                          f"was shown, but its videos take {need_ms / TIMING_SLACK:.0f} ms to play")
        if shown < previous_end:
            raise _Reject(f"impossible timings: trial {i + 1} was shown before trial {i} was answered")
        previous_end = answered


# --------------------------------------------------------------------------------------------------
# Attention checks


def attention(key: dict[str, Any], doc: dict) -> tuple[int, int]:
    """(checks passed, checks failed) for one participant's accepted responses."""
    assigned = key["participants"][doc["participant"] - 1]["trials"]
    design = key["design"]
    passed = failed = 0
    mos_pairs: dict[int, dict[str, dict]] = defaultdict(dict)
    checkable = [q["id"] for q in key["questions"] if q.get("checkable")]
    for a, t in zip(assigned, doc["trials"], strict=True):
        if a["kind"] != "check":
            continue
        if design == "mos":
            mos_pairs[a["check"]][a["role"]] = t["answers"]
            continue
        expected = a.get("expected", {})
        if not expected:
            continue
        if all(t["answers"].get(q) == v for q, v in expected.items()):
            passed += 1
        else:
            failed += 1
    for pair in mos_pairs.values():
        if "original" not in pair or "degraded" not in pair or not checkable:
            continue
        orig = sum(pair["original"][q] for q in checkable) / len(checkable)
        degr = sum(pair["degraded"][q] for q in checkable) / len(checkable)
        if orig > degr:
            passed += 1
        else:
            failed += 1
    return passed, failed


# --------------------------------------------------------------------------------------------------
# Statistics


def analyze(key: dict[str, Any], docs: list[dict], max_check_failures: int = 0) -> dict[str, Any]:
    """Everything the report shows, as plain data (also written as ``results.json``)."""
    participants = []
    included = []
    for doc in docs:
        ok, bad = attention(key, doc)
        keep = bad <= max_check_failures
        participants.append({"participant": doc["participant"], "file": doc["_file"], "checks_passed": ok,
                             "checks_failed": bad, "included": keep})
        if keep:
            included.append(doc)
    design = key["design"]
    methods = key["method_order"]
    questions = [q["id"] for q in key["questions"]]
    # one observation per (participant, item trial, question)
    obs: list[dict] = []
    for doc in included:
        assigned = key["participants"][doc["participant"] - 1]["trials"]
        for a, t in zip(assigned, doc["trials"], strict=True):
            if a["kind"] != "item":
                continue
            shown = [key["media"][v]["method"] for v in a["videos"]]
            for q in questions:
                value = t["answers"][q]
                obs.append({"participant": doc["participant"], "item": a["item"], "question": q,
                            "methods": shown, "value": value})
    result: dict[str, Any] = {
        "study_id": key["study_id"], "design": design, "methods": methods, "questions": questions,
        "participants": participants, "n_included": len(included),
        "n_excluded_by_checks": len(docs) - len(included), "max_check_failures": max_check_failures,
    }
    if design == "ab":
        result["pairs"] = _ab(obs, methods, questions)
    elif design == "mos":
        result["mos"] = _mos(obs, methods, questions)
    else:
        result["real_or_fake"] = _rf(obs, methods)
    result["agreement"] = _agreement(design, obs, key, questions)
    return result


def _ab(obs, methods, questions) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for q in questions:
        rows = []
        for a, b in itertools.combinations(methods, 2):
            relevant = [o for o in obs if o["question"] == q and set(o["methods"]) == {a, b}]
            wins = sum(1 for o in relevant if o["methods"][o["value"]] == a)
            n = len(relevant)
            lo, hi = wilson_interval(wins, n)
            rows.append({"a": a, "b": b, "n": n, "a_preferred": wins,
                         "rate": wins / n if n else math.nan, "ci_low": lo, "ci_high": hi,
                         "p": binom_test(wins, n) if n else math.nan})
        for row, adj in zip(rows, holm([r["p"] for r in rows]), strict=True):
            row["p_holm"] = adj
        out[q] = rows
    return out


def _mos(obs, methods, questions) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for q in questions:
        mine = [o for o in obs if o["question"] == q]
        ratings = {m: [o["value"] for o in mine if o["methods"][0] == m] for m in methods}
        per_method = []
        for m in methods:
            mean, lo, hi = mean_interval(ratings[m])
            per_method.append({"method": m, "n": len(ratings[m]), "mean": mean, "ci_low": lo, "ci_high": hi})
        tests = [{"a": a, "b": b, "p": mann_whitney(ratings[a], ratings[b])}
                 for a, b in itertools.combinations(methods, 2)]
        for row, adj in zip(tests, holm([t["p"] for t in tests]), strict=True):
            row["p_holm"] = adj
        out[q] = {"methods": per_method, "tests": tests}
    return out


def _rf(obs, methods) -> dict[str, Any]:
    per_method = []
    counts = {}
    for m in methods:
        votes = [o["value"] for o in obs if o["methods"][0] == m]
        k, n = sum(1 for v in votes if v == "real"), len(votes)
        counts[m] = (k, n)
        lo, hi = wilson_interval(k, n)
        per_method.append({"method": m, "n": n, "judged_real": k, "rate": k / n if n else math.nan,
                           "ci_low": lo, "ci_high": hi, "p_vs_half": binom_test(k, n) if n else math.nan})
    tests = [{"a": a, "b": b, "p": fisher_exact(*counts[a], *counts[b])}
             for a, b in itertools.combinations(methods, 2)]
    for row, adj in zip(tests, holm([t["p"] for t in tests]), strict=True):
        row["p_holm"] = adj
    return {"methods": per_method, "tests": tests}


def _agreement(design, obs, key, questions) -> dict[str, dict]:
    out = {}
    for q in questions:
        units: dict[int, list] = defaultdict(list)
        for o in obs:
            if o["question"] != q:
                continue
            if design == "ab":
                units[o["item"]].append(o["methods"][o["value"]])  # the method chosen, side-free
            else:
                units[o["item"]].append(o["value"])
        data = list(units.values())
        pairable = sum(1 for u in data if len(u) >= 2)
        if design == "mos":
            out[q] = {"alpha_ordinal": krippendorff_alpha(data, "ordinal"),
                      "alpha_interval": krippendorff_alpha(data, "interval"), "units": pairable}
        else:
            out[q] = {"alpha_nominal": krippendorff_alpha(data, "nominal"), "units": pairable}
    return out


# --------------------------------------------------------------------------------------------------
# Report


def md(text: Any) -> str:
    """Text safe in a Markdown table cell (and as HTML): no tags, no column breaks."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|").replace("\n", " ").replace("`", "\\`")


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "–"
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table: the header, its separator, one line per row of formatted cells."""
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def _section(title: str, *text: str) -> list[str]:
    """A ``##`` heading and its opening lines, each block followed by a blank line."""
    return [f"## {title}", "", *text, ""]


def _figure(caption: str, path: str) -> list[str]:
    """A plot image after a table, set apart by blank lines."""
    return ["", f"![{caption}]({path})", ""]


def _pairwise_tests(tests: list[dict]) -> list[str]:
    """The table of between-method tests (raw and Holm-adjusted p) that follows a per-method table."""
    return _table(["method A", "method B", "p", "p (Holm)"],
                  ([md(t["a"]), md(t["b"]), _p(t["p"]), _p(t["p_holm"])] for t in tests))


def write_report(key: dict[str, Any], result: dict[str, Any], skipped: list[Skipped], out: str | Path
                 ) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(key, result, out)
    q_text = {q["id"]: q["text"] for q in key["questions"]}
    lines = [f"# User study report: {md(key['design'])} design", ""]
    lines += [f"Study `{md(key['study_id'])}`; methods: {', '.join(md(m) for m in result['methods'])}; "
              f"{len(key['clips'])} clips, {len(key['participants'])} participant slots.", ""]
    n_files = len(result["participants"]) + len(skipped)
    lines += _section("Responses",
                      f"- files read: {n_files}; accepted: {len(result['participants'])}; "
                      f"skipped: {len(skipped)}",
                      f"- excluded after attention checks (more than {result['max_check_failures']} failed): "
                      f"{result['n_excluded_by_checks']}; analysed: {result['n_included']} participants")
    if skipped:
        lines += _table(["skipped file", "reason"], ([md(s.file), md(s.reason)] for s in skipped))
        lines.append("")
    failed = [p for p in result["participants"] if p["checks_failed"]]
    if failed:
        lines += _table(["participant", "checks passed", "checks failed", "included"],
                        ([p["participant"], p["checks_passed"], p["checks_failed"],
                          "yes" if p["included"] else "no"] for p in failed))
        lines.append("")
    design = key["design"]
    if design == "ab":
        lines += _section("Preferences",
                          "Rate: how often the first method of the pair was preferred; 95 % Wilson interval; "
                          "exact two-sided binomial test against 0.5; p (Holm): adjusted over the pairs of a "
                          "question.")
        columns = ["method A", "method B", "n", "A preferred", "rate A", "95 % CI", "p", "p (Holm)"]
        for q, rows in result["pairs"].items():
            pairs = _table(columns, ([md(r["a"]), md(r["b"]), r["n"], r["a_preferred"], _f(r["rate"]),
                                      _ci(r["ci_low"], r["ci_high"]), _p(r["p"]), _p(r["p_holm"])]
                                     for r in rows))
            lines += [f"### {md(q)}: {md(q_text[q])}", "", *pairs, *_figure(md(q), plots[q])]
    elif design == "mos":
        lines += _section("Mean opinion scores",
                          "Mean rating (1–5) with a 95 % t interval; between methods a two-sided "
                          "Mann-Whitney U test, Holm-adjusted over the pairs of a question.")
        for q, block in result["mos"].items():
            scores = _table(["method", "n", "mean", "95 % CI"],
                            ([md(r["method"]), r["n"], _f(r["mean"], 2), _ci(r["ci_low"], r["ci_high"], 2)]
                             for r in block["methods"]))
            lines += [f"### {md(q)}: {md(q_text[q])}", "", *scores, "", *_pairwise_tests(block["tests"]),
                      *_figure(md(q), plots[q])]
    else:
        block = result["real_or_fake"]
        lines += _section("Judged real",
                          "Rate judged a real recording; 95 % Wilson interval; binomial test against 0.5; "
                          "between methods Fisher's exact test, Holm-adjusted.")
        lines += _table(["method", "n", "judged real", "rate", "95 % CI", "p vs 0.5"],
                        ([md(r["method"]), r["n"], r["judged_real"], _f(r["rate"]),
                          _ci(r["ci_low"], r["ci_high"]), _p(r["p_vs_half"])] for r in block["methods"]))
        lines += ["", *_pairwise_tests(block["tests"]), *_figure("judged real", plots["judgement"])]
    lines += _section("Inter-rater agreement",
                      "Krippendorff's alpha over items judged by at least two participants (1 = perfect "
                      "agreement, 0 = chance).")
    if design == "mos":
        lines += _table(["question", "units", "alpha (ordinal)", "alpha (interval)"],
                        ([md(q), a["units"], _f(a["alpha_ordinal"]), _f(a["alpha_interval"])]
                         for q, a in result["agreement"].items()))
    else:
        lines += _table(["question", "units", "alpha (nominal)"],
                        ([md(q), a["units"], _f(a["alpha_nominal"])] for q, a in result["agreement"].items()))
    lines.append("")
    report = out / "report.md"
    atomic.write_text(report, "\n".join(lines))
    atomic.write_json(out / "results.json", _no_nan({**result, "skipped": [s.__dict__ for s in skipped]}))
    return report


def _no_nan(obj: Any) -> Any:
    """NaN (an undefined statistic) becomes null, so results.json is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


def _plots(key, result, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}

    def label(text: str) -> str:  # method names are plain text, never mathtext
        return str(text).replace("$", r"\$")

    def err(rows, value):
        lo = [max(0.0, r[value] - r["ci_low"]) if not math.isnan(r["ci_low"]) else 0 for r in rows]
        hi = [max(0.0, r["ci_high"] - r[value]) if not math.isnan(r["ci_high"]) else 0 for r in rows]
        return [lo, hi]

    def save(fig, name):  # name: plot_<question>.png, the question id by the names rule (the key is input)
        fig.tight_layout()
        with atomic.atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)

    design = key["design"]
    if design == "ab":
        for q, rows in result["pairs"].items():
            fig, ax = plt.subplots(figsize=(7, 0.6 + 0.55 * len(rows)))
            labels = [label(f"{r['a']} vs {r['b']}") for r in rows]
            rates = [0 if math.isnan(r["rate"]) else r["rate"] for r in rows]
            ax.barh(range(len(rows)), rates, xerr=err(rows, "rate"), color="#4c78a8", capsize=4)
            ax.axvline(0.5, color="k", lw=1, ls="--")
            ax.set_yticks(range(len(rows)), labels)
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.set_xlabel(f"{q}: rate the first method is preferred (95% Wilson CI)")
            made[q] = file_name(q, ".png", "question id", prefix="plot_", check=False)
            save(fig, made[q])
    elif design == "mos":
        for q, block in result["mos"].items():
            rows = block["methods"]
            fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(rows), 3.6))
            means = [0 if math.isnan(r["mean"]) else r["mean"] for r in rows]
            ax.bar(range(len(rows)), means, yerr=err(rows, "mean"), color="#4c78a8", capsize=4)
            ax.set_xticks(range(len(rows)), [label(r["method"]) for r in rows], rotation=20)
            ax.set_ylim(1, 5)
            ax.set_ylabel(f"{q}: mean rating (95% CI)")
            made[q] = file_name(q, ".png", "question id", prefix="plot_", check=False)
            save(fig, made[q])
    else:
        rows = result["real_or_fake"]["methods"]
        fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(rows), 3.6))
        rates = [0 if math.isnan(r["rate"]) else r["rate"] for r in rows]
        ax.bar(range(len(rows)), rates, yerr=err(rows, "rate"), color="#4c78a8", capsize=4)
        ax.axhline(0.5, color="k", lw=1, ls="--")
        ax.set_xticks(range(len(rows)), [label(r["method"]) for r in rows], rotation=20)
        ax.set_ylim(0, 1)
        ax.set_ylabel("judged real (95% Wilson CI)")
        save(fig, "plot_judgement.png")
        made["judgement"] = "plot_judgement.png"
    return made


def run_analyze(key_path: str | Path, response_paths: list[str | Path], out: str | Path,
                max_check_failures: int = 0) -> tuple[Path, dict[str, Any], list[Skipped]]:
    key = load_key(key_path)
    docs, skipped = read_responses(key, response_paths)
    result = analyze(key, docs, max_check_failures=max_check_failures)
    report = write_report(key, result, skipped, out)
    return report, result, skipped
