"""Laying out a paper table (``checking.tables.PaperTable``) as LaTeX (booktabs) and Markdown:
numbers rounded as a paper rounds them, the estimate on one line and its interval (or sd) on the
line below."""

from __future__ import annotations

import math

import numpy as np

SPREADS = ("interval", "sd")
LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def decimals(values, kind: str = "number") -> int:
    """Decimals to show values with: two significant digits of the smallest nonzero magnitude,
    at least two and at most four decimals ("number"); always two ("percent"); none ("whole");
    two significant digits, at most two decimals ("dollars": 114, 36, 3.8, 0.67).

    Parameters
    ----------
    values : array-like
        The scales of the cells shown with these decimals (each the larger of the estimate's
        magnitude and its sd).
    kind : {"number", "whole", "percent", "dollars"}

    Returns
    -------
    int
    """
    if kind == "whole":
        return 0
    if kind == "percent":
        return 2
    finite = [abs(float(v)) for v in np.ravel(values) if np.isfinite(v) and v != 0]
    if not finite:
        return 0 if kind == "dollars" else 2
    digits = 1 - math.floor(math.log10(min(finite)))
    if kind == "dollars":
        return int(min(max(digits, 0), 2))
    return int(min(max(digits, 2), 4))


def format_number(value: float, places: int) -> str:
    """``value`` rounded to ``places`` decimals with thousands separated by commas; "" for NaN;
    never "-0.00".

    Parameters
    ----------
    value : float
    places : int

    Returns
    -------
    str
    """
    if value is None or not np.isfinite(value):
        return ""
    text = f"{value:,.{places}f}"
    if text.startswith("-") and float(text[1:].replace(",", "")) == 0:
        text = text[1:]
    return text


def escape_latex(text: str) -> str:
    """Plain text with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _scale(frame, name: str, column: str) -> float:
    """A cell's scale for rounding: the larger of its estimate's magnitude and its sd, so that a
    near-zero estimate gets no more digits than its uncertainty supports."""
    row = frame.xs(name, level="name").iloc[0]
    estimate, sd = abs(row[(column, "estimate")]), row[(column, "sd")]
    return max(estimate, sd) if np.isfinite(sd) else estimate


def _places(table, name: str, column: str) -> tuple[str, int]:
    frame = table.frame
    columns = frame.columns.get_level_values(0).unique()
    if name in table.kinds:  # a parameter row: one rounding for the row
        kind = table.kinds[name]
        return kind, decimals([_scale(frame, name, c) for c in columns], kind)
    kind = table.kinds.get(column, "number")
    if kind == "dollars":  # each cell its own two significant digits, as the paper's $ column
        return kind, decimals([_scale(frame, name, column)], kind)
    names = frame.index.get_level_values("name")
    return kind, decimals([_scale(frame, n, column) for n in names], kind)


def cells(table, spread: str = "interval"):
    """The table as text cells: a list of (kind, items) with kind "heading" (items: [text]),
    "estimate" (items: [row name, estimate cells...]) or "spread" (items: [cells...]).

    Parameters
    ----------
    table : PaperTable
    spread : {"interval", "sd"}
        Below each estimate its interval "[lower, upper]" or its sd "(sd)" (the interval in a
        column that has no sd).

    Returns
    -------
    list of (str, list)
    """
    if spread not in SPREADS:
        from bayes_spill.errors import BayesSpillError

        raise BayesSpillError(f"the spread is one of {', '.join(SPREADS)}, got {spread!r}")
    frame = table.frame
    columns = list(frame.columns.get_level_values(0).unique())
    # a column without sds (Table 6's) keeps its interval under spread="sd"
    with_sd = {c for c in columns if frame[(c, "sd")].notna().any()}
    out = []
    for heading, names in table.panels:
        if not names:
            continue
        out.append(("heading", [heading]))
        for name in names:
            row = frame.xs(name, level="name").iloc[0]
            tops, belows = [], []
            for column in columns:
                kind, places = _places(table, name, column)
                top = format_number(row[(column, "estimate")], places)
                if top and kind == "percent":
                    top += "%"
                if spread == "interval" or column not in with_sd:
                    lo, hi = row[(column, "lower")], row[(column, "upper")]
                    below = (
                        f"[{format_number(lo, places)}, {format_number(hi, places)}]"
                        if np.isfinite(lo) and np.isfinite(hi)
                        else ""
                    )
                else:
                    sd = row[(column, "sd")]
                    below = f"({format_number(sd, places)})" if np.isfinite(sd) else ""
                tops.append(top)
                belows.append(below)
            out.append(("estimate", [name, *tops]))
            if any(belows):
                out.append(("spread", belows))
    return out


def latex_number(cell: str) -> str:
    """A number cell for LaTeX: its % escaped and its minus signs typeset as math minus (a bare
    "-" in text is a hyphen)."""
    return escape_latex(cell).replace("-", "$-$")


def notes(table, spread: str) -> list[str]:
    """The table's notes for what is written below the estimates."""
    return [n[spread] if isinstance(n, dict) else str(n) for n in table.notes]


def _label(table, name: str, latex: bool) -> str:
    frame = table.frame
    text = str(frame.index[frame.index.get_level_values("name") == name][0][1])
    if not latex:
        return text.replace("|", r"\|")
    return table.latex_labels.get(name) or escape_latex(text)


def latex(table, spread: str = "interval", standalone: bool = False) -> str:
    """The table as a LaTeX ``table`` environment with a booktabs ``tabular`` (needs
    ``\\usepackage{booktabs}``); ``standalone``: a whole article that compiles as it is.

    Parameters
    ----------
    table : PaperTable
    spread : {"interval", "sd"}
    standalone : bool, default False

    Returns
    -------
    str
    """
    columns = list(table.frame.columns.get_level_values(0).unique())
    n = len(columns) + 1
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        # four or more columns of numbers with intervals: small type (and, from five, narrower
        # column gaps) keeps the table within a paper's text width
        *([r"\small"] if len(columns) >= 4 else []),
        *([r"\setlength{\tabcolsep}{4pt}"] if len(columns) >= 5 else []),
        r"\caption{" + escape_latex(table.title) + "}",
        r"\begin{tabular}{l" + "c" * len(columns) + "}",
        r"\toprule",
    ]
    if any(text for text, _ in table.groups):
        heads, rules, start = [""], [], 2
        for text, span in table.groups:
            heads.append(escape_latex(text) if span == 1 else rf"\multicolumn{{{span}}}{{c}}{{{escape_latex(text)}}}")
            if text:
                rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines.append(" & ".join(heads) + r" \\")
        lines.extend(rules)
    lines.append(" & ".join([escape_latex(table.stub), *(escape_latex(c) for c in columns)]) + r" \\")
    lines.append(r"\midrule")
    first = True
    for kind, items in cells(table, spread):
        if kind == "heading":
            if not first:
                lines.append(r"\midrule")
            if items[0]:
                lines.append(rf"\multicolumn{{{n}}}{{l}}{{\emph{{{escape_latex(items[0])}}}}} \\")
            first = False
        elif kind == "estimate":
            lines.append(" & ".join([_label(table, items[0], True), *(latex_number(c) for c in items[1:])]) + r" \\")
        else:
            lines.append(" & ".join(["", *(latex_number(c) for c in items)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines.append(r"\par\smallskip")
        lines.append(
            r"\parbox{\linewidth}{\footnotesize Notes: " + " ".join(escape_latex(n) for n in notes(table, spread)) + "}"
        )
    lines.append(r"\end{table}")
    body = "\n".join(lines) + "\n"
    if standalone:
        return (
            "\n".join(
                [
                    r"\documentclass{article}",
                    r"\usepackage[margin=1in]{geometry}",
                    r"\usepackage{booktabs}",
                    r"\begin{document}",
                    body.rstrip(),
                    r"\end{document}",
                ]
            )
            + "\n"
        )
    return body


def markdown(table, spread: str = "interval") -> str:
    """The table as a Markdown pipe table, its title above and its notes below.

    Parameters
    ----------
    table : PaperTable
    spread : {"interval", "sd"}

    Returns
    -------
    str
    """
    columns = list(table.frame.columns.get_level_values(0).unique())
    heads = [f"{c}, %" if table.kinds.get(c) == "percent" else c for c in columns]
    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join([table.stub, *heads]).replace("$", r"\$") + " |",
        "|" + "|".join([":---", *("---:" for _ in columns)]) + "|",
    ]
    empty = [""] * len(columns)
    for kind, items in cells(table, spread):
        if kind == "heading":
            if items[0]:
                lines.append("| " + " | ".join([f"**{items[0]}**", *empty]) + " |")
        elif kind == "estimate":
            lines.append("| " + " | ".join([_label(table, items[0], False), *items[1:]]) + " |")
        else:
            lines.append("| " + " | ".join(["", *items]) + " |")
    if table.notes:
        lines += ["", *(n.replace("$", r"\$") for n in notes(table, spread))]
    return "\n".join(lines) + "\n"
