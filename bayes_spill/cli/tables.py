"""`bayes-spill table`: the paper's Tables 3, 5 and 6 from fits, as LaTeX, Markdown or CSV.
Heavy libraries are imported inside the command function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bayes_spill.errors import BayesSpillError

FORMATS = ("latex", "markdown", "csv")
SUFFIX_FORMAT = {".tex": "latex", ".md": "markdown", ".csv": "csv"}


def _labels(text: str) -> list[str]:
    labels = [s.strip() for s in text.split(",")]
    if not all(labels):
        raise argparse.ArgumentTypeError(f"labels are a comma list of non-empty names, got {text!r}")
    return labels


def cmd_table(args: argparse.Namespace) -> int:
    from bayes_spill.checking import tables

    fmt = args.format or (SUFFIX_FORMAT.get(Path(args.out).suffix.lower()) if args.out else None) or "markdown"
    if args.table == "6":
        if len(args.dirs) != 1 or args.baseline or args.labels:
            raise BayesSpillError(
                "Table 6 is made from one counterfactual (a CSV written by `bayes-spill counterfactual`, or the fit "
                "folder holding it), without --baseline or --labels"
            )
        table = tables.counterfactual_table(args.dirs[0])
    else:
        from bayes_spill.inference.results import FittedModel

        fits = [FittedModel.load(d) for d in args.dirs]
        table = tables.parameter_table(fits, baseline=args.baseline, which=args.table, labels=args.labels)
    text = table.render(fmt, spread=args.spread, standalone=args.standalone)
    if not args.out:
        sys.stdout.write(text)
        return 0
    from bayes_spill.inference.posterior_io import atomic_path

    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    print(f"wrote {out}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "table",
        help="the paper's Tables 3 and 5 (fits side by side, and the two-step baseline) or Table 6, as LaTeX, Markdown or CSV",
        description=(
            "Tables 3 and 5: parameters in rows, one column per fit (posterior median, 90%% interval or sd below) "
            "and, with --baseline, the two-step estimator's columns (estimate, bootstrap interval or s.e. below). "
            "Table 6: from the CSV `bayes-spill counterfactual` wrote."
        ),
    )
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="fit folders (or posterior.nc), one column each; for --table 6 one counterfactual CSV or the fit folder holding it",
    )
    p.add_argument(
        "--baseline",
        metavar="BASELINE_DIR",
        help="a folder written by `bayes-spill baseline --out` on the fits' data (baseline.json, bootstrap.csv): "
        "its columns go beside the fits' (it is read, not re-estimated)",
    )
    p.add_argument(
        "--table",
        choices=("parameters", "3", "5", "6"),
        default="parameters",
        help="3: production function; 5: location choice; parameters (default): both, as two panels; 6: counterfactual",
    )
    p.add_argument("--format", choices=FORMATS, help="default: from --out's suffix (.tex, .md, .csv), else markdown")
    p.add_argument(
        "--spread",
        choices=("interval", "sd"),
        default="interval",
        help="below each estimate: the 90%% interval (default) or the sd / bootstrap s.e. in parentheses",
    )
    p.add_argument("--labels", type=_labels, help="column headings of the fits, comma separated (default: model names)")
    p.add_argument("--standalone", action="store_true", help="LaTeX: a whole document (article with booktabs)")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_table)
