"""Render a :class:`~talkface.leaderboard.table.Leaderboard` as Markdown, LaTeX (booktabs), CSV or one
self-contained HTML page. Every string that comes from a file or a method name is escaped for the
output format; the HTML page loads nothing from the network.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Callable

from talkface.leaderboard.stats import p_text
from talkface.leaderboard.table import Cell, Column, Leaderboard, Row

FORMATS = ("md", "latex", "csv", "html")
EXTENSIONS = {"md": ".md", "latex": ".tex", "csv": ".csv", "html": ".html"}

NO_WINNER_MARK = "≈"
UNRANKED_MARK = "‡"


def render(board: Leaderboard, fmt: str) -> str:
    try:
        fn: Callable[[Leaderboard], str] = {
            "md": to_markdown,
            "latex": to_latex,
            "csv": to_csv,
            "html": to_html,
        }[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return fn(board)


# -- shared text -----------------------------------------------------------------------------------


def _value_text(col: Column, cell: Cell | None, mean_only: bool, pm: str = " ± ") -> str:
    if cell is None or not math.isfinite(cell.mean):
        return "–"
    if mean_only or not math.isfinite(cell.half_width):
        return col.fmt(cell.mean)
    return f"{col.fmt(cell.mean)}{pm}{col.fmt(cell.half_width)}"


def _header_text(col: Column, duplicate: bool) -> str:
    label = col.label + (f"/{col.variant}" if duplicate else "")
    unit = f" ({col.unit})" if col.unit else ""
    return f"{label}{unit} {col.arrow}"


def _duplicates(board: Leaderboard) -> set[str]:
    seen: dict[str, int] = {}
    for c in board.columns:
        seen[c.metric] = seen.get(c.metric, 0) + 1
    return {m for m, n in seen.items() if n > 1}


def _legend(board: Leaderboard, second_style: str) -> list[str]:
    values = (
        "Values: mean over clips."
        if board.mean_only
        else "Values: mean ± half the width of the 95% percentile-bootstrap interval of the mean over clips "
        "(2000 resamples, seed 0; exact bounds in the CSV)."
    )
    lines = [
        values,
        "↑ higher is better; ↓ lower is better; → real: closer to the real data's value (row "
        f"'{'real data (reference clips)'}') is better.",
        f"Bold: best ranked method per column; {second_style}: second best. {NO_WINNER_MARK} after a "
        "header: no winner is marked because the best two ranked methods' 95% intervals overlap (or "
        "cannot be computed).",
    ]
    unranked = [r.method for r in board.rows if r.kind == "unranked"]
    if unranked:
        lines.append(
            f"{UNRANKED_MARK} unranked: {', '.join(unranked)} (shown for reference, never marked best)."
        )
    return lines


def _column_notes(col: Column) -> str:
    d = col.definition
    parts = [f"{col.metric}, variant {col.variant} ({col.direction_text})"]
    if d.get("doc"):
        parts.append(str(d["doc"]).rstrip("."))
    if d.get("units"):
        parts.append(f"units: {d['units']}")
    if d.get("resolution"):
        parts.append(f"resolution: {d['resolution']}")
    if col.direction == "closer" and col.target is not None:
        src = "real videos" if col.target_source == "real" else "ground-truth method"
        parts.append(f"target {col.fmt(col.target)} ({src})")
    if col.no_winner:
        parts.append(f"no winner: {col.no_winner}")
    return "; ".join(parts) + "."


def _published_columns(board: Leaderboard) -> list[tuple[str, str]]:
    cols: list[tuple[str, str]] = []
    for p in board.published:
        if (p.metric, p.variant) not in cols:
            cols.append((p.metric, p.variant))
    return cols


def _published_rows(board: Leaderboard) -> list[tuple[str, str, dict[tuple[str, str], float]]]:
    rows: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for p in board.published:
        rows.setdefault((p.method, p.citation), {})[(p.metric, p.variant)] = p.value
    return [(m, c, v) for (m, c), v in rows.items()]


def _fmt_published(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


def _venue(p) -> str:
    return p.venue if str(p.year) in p.venue else f"{p.venue} {p.year}"


def _published_sources(board: Leaderboard) -> list[str]:
    """One line per (paper, source) and one per number that carries a note of its own."""
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for p in board.published:
        if (p.paper, p.source_url) in seen:
            continue
        seen.add((p.paper, p.source_url))
        kind = (
            "the paper"
            if p.source_kind == "paper"
            else "a transcription of the paper (not checked against the paper itself)"
        )
        out.append(f"Source: {p.paper} ({_venue(p)}), {p.table}; split: {p.split}; copied from {kind}: "
                   f"{p.source_url}.")
    for p in board.published:
        if p.note:
            out.append(f"{p.method}, {p.metric}: {p.note}.")
    return out


# -- Markdown --------------------------------------------------------------------------------------


def md_escape(text: str) -> str:
    text = " ".join(str(text).split())
    text = html.escape(text, quote=False)
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return text


def to_markdown(board: Leaderboard) -> str:
    dup = _duplicates(board)
    out = [f"**Protocol:** {md_escape(board.caption)}", ""]
    head = ["Method"]
    for i, col in enumerate(board.columns, start=1):
        mark = f" {NO_WINNER_MARK}" if col.no_winner else ""
        head.append(f"{md_escape(_header_text(col, col.metric in dup))}{mark} [{i}]")
    out.append("| " + " | ".join(head) + " |")
    out.append("| --- |" + " ---: |" * len(board.columns))
    for row in board.rows:
        name = md_escape(row.method) + (f" {UNRANKED_MARK}" if row.kind == "unranked" else "")
        if row.kind == "real":
            name = f"*{name}*"
        cells = [name]
        for col in board.columns:
            cell = row.cells.get(col.key)
            text = _value_text(col, cell, board.mean_only)
            if cell is not None and cell.mark == "best":
                text = f"**{text}**"
            elif cell is not None and cell.mark == "second":
                text = f"*{text}*"
            cells.append(text)
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for line in _legend(board, "italics"):
        out.append(f"- {md_escape(line)}")
    out.append("")
    for i, col in enumerate(board.columns, start=1):
        out.append(f"{i}. {md_escape(_column_notes(col))}")
    if board.notes:
        out.append("")
        out.append("**Notes**")
        out.append("")
        out += [f"- {md_escape(n)}" for n in board.notes]
    out += _published_markdown(board)
    return "\n".join(out) + "\n"


def _published_markdown(board: Leaderboard) -> list[str]:
    if board.published_dataset is None:
        return []
    out = ["", f"**Published numbers ({md_escape(board.published_dataset)}): cited, not measured here; "
           "never ranked against the rows above.**", ""]
    if not board.published:
        out.append(f"No published number for {md_escape(board.published_dataset)} is in talkface's data file "
                   "yet (only numbers sourced from text someone read are added).")
        return out
    cols = _published_columns(board)
    out.append("| Method (cited) | Source | " + " | ".join(md_escape(m) for m, _ in cols) + " |")
    out.append("| --- | --- |" + " ---: |" * len(cols))
    for method, citation, values in _published_rows(board):
        cells = [md_escape(method), md_escape(citation)] + [_fmt_published(values.get(c)) for c in cols]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for m, v in cols:
        out.append(f"- {md_escape(m)}: {md_escape(v)}")
    for s in _published_sources(board):
        out.append(f"- {md_escape(s)}")
    return out


# -- LaTeX -----------------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\textasciicircum{}",
    "_": r"\_",
    "%": r"\%",
    "~": r"\textasciitilde{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    "≈": r"$\approx$",
    "‡": r"$^\ddagger$",
    "–": "--",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in " ".join(str(text).split()))


def _latex_value(col: Column, cell: Cell | None, mean_only: bool) -> str:
    if cell is None or not math.isfinite(cell.mean):
        return "--"
    inner = _value_text(col, cell, mean_only, pm=r" \pm ")
    if cell.mark == "best":
        inner = rf"\mathbf{{{inner}}}"
    elif cell.mark == "second":
        inner = rf"\underline{{{inner}}}"
    return f"${inner}$"


def to_latex(board: Leaderboard) -> str:
    dup = _duplicates(board)
    n = len(board.columns)
    out = [
        "% talkface leaderboard. Needs \\usepackage{booktabs}.",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{Protocol: {latex_escape(board.caption)}.}}",
        r"\begin{tabular}{l" + "c" * n + "}",
        r"\toprule",
    ]
    head = ["Method"]
    for i, col in enumerate(board.columns, start=1):
        mark = f" {NO_WINNER_MARK}" if col.no_winner else ""
        head.append(latex_escape(_header_text(col, col.metric in dup) + mark) + rf"\textsuperscript{{{i}}}")
    out.append(" & ".join(head) + r" \\")
    out.append(r"\midrule")
    previous = None
    for row in board.rows:
        group = "top" if row.kind in ("unranked", "real") else "measured"
        if previous == "top" and group == "measured":
            out.append(r"\midrule")
        previous = group
        name = latex_escape(row.method) + (r"$^\ddagger$" if row.kind == "unranked" else "")
        if row.kind == "real":
            name = rf"\textit{{{name}}}"
        cells = [name] + [_latex_value(c, row.cells.get(c.key), board.mean_only) for c in board.columns]
        out.append(" & ".join(cells) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    out.append(r"\par\smallskip")
    out.append(r"\begin{minipage}{\linewidth}\footnotesize")
    for line in _legend(board, "underlined"):
        out.append(latex_escape(line) + r" \\")
    for i, col in enumerate(board.columns, start=1):
        out.append(rf"\textsuperscript{{{i}}}" + latex_escape(_column_notes(col)) + r" \\")
    for note in board.notes:
        out.append(latex_escape(note) + r" \\")
    out.append(r"\end{minipage}")
    out.append(r"\end{table}")
    out += _published_latex(board)
    return "\n".join(out) + "\n"


def _published_latex(board: Leaderboard) -> list[str]:
    if board.published_dataset is None:
        return []
    title = (f"Published numbers ({board.published_dataset}): cited, not measured here; never ranked "
             "against measured rows.")
    out = ["", r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(title)}}}"]
    if not board.published:
        none = f"No published number for {board.published_dataset} is in talkface's data file."
        out.append(latex_escape(none))
        out.append(r"\end{table}")
        return out
    cols = _published_columns(board)
    out += [r"\begin{tabular}{ll" + "c" * len(cols) + "}", r"\toprule"]
    out.append(" & ".join(["Method (cited)", "Source"] + [latex_escape(m) for m, _ in cols]) + r" \\")
    out.append(r"\midrule")
    for method, citation, values in _published_rows(board):
        cells = [latex_escape(method), latex_escape(citation)]
        cells += [latex_escape(_fmt_published(values.get(c))) for c in cols]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize"]
    for m, v in cols:
        out.append(latex_escape(f"{m}: {v}") + r" \\")
    for s in _published_sources(board):
        out.append(latex_escape(s) + r" \\")
    out += [r"\end{minipage}", r"\end{table}"]
    return out


# -- CSV -------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "kind",
    "method",
    "metric",
    "variant",
    "unit",
    "direction",
    "mean",
    "ci_low",
    "ci_high",
    "n_clips",
    "n_failed",
    "rank",
    "mark",
    "column_winner",
    "no_winner_reason",
    "target",
    "paired_test",
    "paired_with",
    "test_statistic",
    "test_p_value",
    "test_n_pairs",
    "protocol",
    "paper",
    "year",
    "venue",
    "dataset",
    "split",
    "table",
    "source_url",
    "source_kind",
    "note",
)


def _num(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return ""
    return format(float(v), ".10g")


def to_csv(board: Leaderboard) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in board.rows:
        for col in board.columns:
            cell = row.cells.get(col.key)
            if cell is None:
                continue
            rec = _csv_cell(board, row, col, cell)
            w.writerow(rec)
    for p in board.published:
        w.writerow(
            {
                "kind": "cited",
                "method": p.method,
                "metric": p.metric,
                "variant": p.variant,
                "direction": (
                    "" if p.higher_is_better is None else "higher" if p.higher_is_better else "lower"
                ),
                "mean": _num(p.value),
                "paper": p.paper,
                "year": str(p.year),
                "venue": p.venue,
                "dataset": p.dataset,
                "split": p.split,
                "table": p.table,
                "source_url": p.source_url,
                "source_kind": p.source_kind,
                "note": p.note,
            }
        )
    return buf.getvalue()


def _csv_cell(board: Leaderboard, row: Row, col: Column, cell: Cell) -> dict[str, str]:
    rank = col.ranking.index(row.method) + 1 if row.method in col.ranking else None
    rec = {
        "kind": row.kind,
        "method": row.method,
        "metric": col.metric,
        "variant": col.variant,
        "unit": col.unit,
        "direction": col.direction,
        "mean": _num(cell.mean),
        "ci_low": _num(cell.low),
        "ci_high": _num(cell.high),
        "n_clips": str(cell.n),
        "n_failed": str(cell.n_failed),
        "rank": "" if rank is None else str(rank),
        "mark": cell.mark,
        "column_winner": col.winner or "",
        "no_winner_reason": col.no_winner or "",
        "target": _num(col.target),
        "protocol": board.caption,
    }
    if col.test is not None and col.test_pair is not None and row.method in col.test_pair:
        other = col.test_pair[1] if row.method == col.test_pair[0] else col.test_pair[0]
        rec.update(
            {
                "paired_test": f"{col.test.test} ({col.test.method})",
                "paired_with": other,
                "test_statistic": _num(col.test.statistic),
                "test_p_value": _num(col.test.p_value),
                "test_n_pairs": str(col.test.n_pairs),
            }
        )
    return rec


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d1d1f;max-width:90rem}
table{border-collapse:collapse;margin:1rem 0}
th,td{padding:.35rem .7rem;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #333;vertical-align:bottom}
thead th button{font:inherit;font-weight:600;background:none;border:0;cursor:pointer;padding:0;color:inherit}
thead th[aria-sort=ascending] button::after{content:' \\25B2'}
thead th[aria-sort=descending] button::after{content:' \\25BC'}
td.best{font-weight:700}
td.second{text-decoration:underline}
tr.unranked td,tr.real td{color:#555;font-style:italic}
tfoot td{font-size:.85em;color:#444;white-space:normal}
.nowinner{color:#a05a00}
.notes li,.legend li{margin:.2rem 0}
caption{text-align:left;font-weight:600;padding-bottom:.4rem}
#published td:nth-child(-n+2),#published th:nth-child(-n+2){text-align:left;white-space:normal}
"""

_JS = """
(function () {
  var table = document.getElementById('leaderboard');
  if (!table) { return; }
  var tbody = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;
  function sortKey(td) {
    var v = td.getAttribute('data-sort');
    return v === null ? '' : v;
  }
  function compare(a, b, col, numeric, dir) {
    var ka = sortKey(a.cells[col]), kb = sortKey(b.cells[col]);
    if (ka === '' && kb === '') { return a.rowIndexOrig - b.rowIndexOrig; }
    if (ka === '') { return 1; }
    if (kb === '') { return -1; }
    var c = numeric ? (parseFloat(ka) - parseFloat(kb)) : ka.localeCompare(kb);
    if (c === 0) { return a.rowIndexOrig - b.rowIndexOrig; }
    return dir * c;
  }
  Array.prototype.forEach.call(tbody.rows, function (tr, i) { tr.rowIndexOrig = i; });
  Array.prototype.forEach.call(headers, function (th, col) {
    var button = th.querySelector('button');
    if (!button) { return; }
    button.addEventListener('click', function () {
      var ascending = th.getAttribute('aria-sort') !== 'ascending';
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      var numeric = th.getAttribute('data-type') === 'number';
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(function (a, b) { return compare(a, b, col, numeric, ascending ? 1 : -1); });
      rows.forEach(function (tr) { tbody.appendChild(tr); });
    });
  });
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def to_html(board: Leaderboard) -> str:
    dup = _duplicates(board)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        "<title>talkface leaderboard</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<h1>talkface leaderboard</h1>",
        f"<p><strong>Protocol:</strong> {_e(board.caption)}</p>",
        '<table id="leaderboard">',
        "<caption>Measured here (click a header to sort)</caption>",
        "<thead><tr>",
        '<th scope="col" data-type="text"><button type="button">Method</button></th>',
    ]
    for col in board.columns:
        mark = ""
        if col.no_winner:
            mark = f' <span class="nowinner" title="{_e(col.no_winner)}">{NO_WINNER_MARK}</span>'
        title = _e(_column_notes(col))
        out.append(
            f'<th scope="col" data-type="number" data-metric="{_e(col.name)}" title="{title}">'
            f'<button type="button">{_e(_header_text(col, col.metric in dup))}</button>{mark}</th>'
        )
    out.append("</tr></thead>")
    out.append("<tbody>")
    for row in board.rows:
        label = _e(row.method) + (f" {UNRANKED_MARK}" if row.kind == "unranked" else "")
        out.append(f'<tr class="{row.kind}" data-method="{_e(row.method)}">')
        out.append(f'<td data-sort="{_e(row.method)}">{label}</td>')
        for col in board.columns:
            cell = row.cells.get(col.key)
            if cell is None or not math.isfinite(cell.mean):
                out.append('<td>–</td>')
                continue
            cls = f' class="{cell.mark}"' if cell.mark else ""
            tip = f"n={cell.n} clips"
            if math.isfinite(cell.low):
                tip += f", 95% interval [{col.fmt(cell.low)}, {col.fmt(cell.high)}]"
            if cell.n_failed:
                tip += f", {cell.n_failed} failed"
            out.append(
                f'<td{cls} data-sort="{format(cell.mean, ".10g")}" title="{_e(tip)}">'
                f"{_e(_value_text(col, cell, board.mean_only))}</td>"
            )
        out.append("</tr>")
    out.append("</tbody>")
    out.append("<tfoot><tr><td>Paired test, best two</td>")
    for col in board.columns:
        if col.test is None or col.test_pair is None:
            out.append("<td>–</td>")
            continue
        a, b = col.test_pair
        out.append(
            f"<td>{_e(a)} vs {_e(b)}: {_e(col.test.test)} {_e(p_text(col.test.p_value))} "
            f"(n={col.test.n_pairs})</td>"
        )
    out.append("</tr></tfoot>")
    out.append("</table>")
    out.append('<ul class="legend">')
    out += [f"<li>{_e(line)}</li>" for line in _legend(board, "underlined")]
    out.append(
        f"<li>Paired test: {_e(_test_text(board))}</li>"
    )
    out.append("</ul>")
    out.append("<ol>")
    out += [f"<li>{_e(_column_notes(col))}</li>" for col in board.columns]
    out.append("</ol>")
    if board.notes:
        out.append('<h2>Notes</h2><ul class="notes">')
        out += [f"<li>{_e(n)}</li>" for n in board.notes]
        out.append("</ul>")
    out += _published_html(board)
    out += [f"<script>{_JS}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _test_text(board: Leaderboard) -> str:
    if board.test_kind == "wilcoxon":
        return ("two-sided Wilcoxon signed-rank test on the per-clip differences of the best two ranked "
                "methods (clips both have; for 'closer to real' columns, their per-clip distances to the "
                "real clip's value).")
    return ("paired bootstrap over clips (2000 resamples, seed 0) of the difference in the column's "
            "statistic between the best two ranked methods; p is twice the smaller tail around 0.")


def _published_html(board: Leaderboard) -> list[str]:
    if board.published_dataset is None:
        return []
    out = [f"<h2>Published numbers ({_e(board.published_dataset)})</h2>",
           "<p>Cited from papers, not measured here, under the papers' own protocols and metric "
           "definitions; never ranked against the measured rows above.</p>"]
    if not board.published:
        name = _e(board.published_dataset)
        out.append(f"<p>No published number for {name} is in talkface's data file yet.</p>")
        return out
    cols = _published_columns(board)
    out.append('<table id="published"><thead><tr><th>Method (cited)</th><th>Source</th>')
    out += [f'<th title="{_e(v)}">{_e(m)}</th>' for m, v in cols]
    out.append("</tr></thead><tbody>")
    for method, citation, values in _published_rows(board):
        out.append(f"<tr><td>{_e(method)}</td><td>{_e(citation)}</td>")
        out += [f"<td>{_e(_fmt_published(values.get(c)))}</td>" for c in cols]
        out.append("</tr>")
    out.append("</tbody></table><ul>")
    out += [f"<li>{_e(m)}: {_e(v)}</li>" for m, v in cols]
    out += [f"<li>{_e(s)}</li>" for s in _published_sources(board)]
    out.append("</ul>")
    return out
