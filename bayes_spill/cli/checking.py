"""Subcommands ``bayes-spill check DIR`` and ``bayes-spill compare DIR1 DIR2 ...``.

Heavy libraries (PyMC, ArviZ, matplotlib, statsmodels) are imported inside the command functions,
so ``bayes-spill --help`` stays fast.
"""

from __future__ import annotations

import argparse

from bayes_spill.cli.arguments import non_negative_int, positive_int, seed


def cmd_check(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from bayes_spill.checking.report import check

    report = check(
        args.dir,
        n_draws=args.ppc_draws,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        make_figures=not args.no_figures,
        counties=args.counties,
    )
    for line in report.verdict_lines():
        print(f"- {line}")
    print(
        f"\nwrote {report.report_path}, {report.html_path} (self-contained), {len(report.figures)} figures in "
        f"{args.dir}/figures/, and the posterior_predictive group"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from bayes_spill.checking.comparison import compare

    result = compare(args.dirs)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("PSIS-LOO over the per-firm log-likelihood, best first")
        print(result.table.to_string(float_format=lambda v: f"{v:.4g}"))
        print("\nPareto k per model (good <= good_k < bad <= 1 < very bad)")
        print(result.pareto.to_string(float_format=lambda v: f"{v:.3g}"))
    print()
    for line in result.verdicts:
        print(f"- {line}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "check",
        help="posterior predictive checks, identification, LOO, figures, DIR/report.md and DIR/report.html for a fit",
    )
    p.add_argument("dir", help="a fit folder (holding posterior.nc)")
    p.add_argument("--ppc-draws", type=positive_int, help="posterior draws for the predictive checks (default 200)")
    p.add_argument(
        "--bootstrap",
        type=non_negative_int,
        default=200,
        help="bootstrap resamples for Table 4's t-statistics (default 200)",
    )
    p.add_argument("--seed", type=seed, help="random seed (default: the fit's)")
    p.add_argument("--counties", help="the county table of the fit, when it was not the built-in one")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "compare",
        help="PSIS-LOO comparison of fits to the same data (refuses fits whose likelihoods cover different data)",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="fit folders (two or more)")
    p.set_defaults(func=cmd_compare)
