"""`bayes-spill baseline`: the paper's two-step estimator. Heavy libraries are imported inside
the command function."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayes_spill.cli import arguments
from bayes_spill.cli.arguments import non_negative_int, positive_int
from bayes_spill.errors import BayesSpillError


def cmd_baseline(args: argparse.Namespace) -> int:
    from bayes_spill.inference.fitting import resolve_config, resolve_data
    from bayes_spill.twostep.design import BaselineSettings
    from bayes_spill.twostep.estimator import two_step
    from bayes_spill.twostep.results import report, save_result

    config = resolve_config(args.model)
    panel, _ = resolve_data(args.data, config, args.counties)
    if args.data and panel.truth is None and Path(args.data).with_name("truth.json").is_file():
        # a simulated industry written by `bayes-spill simulate`: show the truth beside the estimates
        import json

        from bayes_spill.data.panel import PreparedPanel

        truth = json.loads(Path(args.data).with_name("truth.json").read_text())
        panel = PreparedPanel(**{**panel.__dict__, "truth": truth})
    try:
        settings = BaselineSettings(
            n_bootstrap=args.bootstrap,
            workers=args.workers,
            seed=args.seed,
            halflife_bounds_km=(args.min_halflife_km, args.max_halflife_km),
        )
    except ValueError as exc:
        raise BayesSpillError(f"baseline: {exc}") from None
    result = two_step(panel, config, settings, table4_bootstrap=args.table4_bootstrap, progress=not args.no_progress)
    print(report(result))
    if args.out:
        path = save_result(result, args.out)
        print(f"\nwrote {path}" + (f" and {Path(args.out) / 'bootstrap.csv'}" if len(result.bootstrap) else ""))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "baseline", help="the paper's two-step estimator (GMM, then ML with the BLP contraction); prints Tables 3-5"
    )
    p.add_argument("--data", help="firm panel (CSV or Parquet); default: the embedded software industry")
    p.add_argument("--counties", help="county table (default: built in)")
    p.add_argument(
        "--model",
        default="lychagin2010",
        help="model TOML or name: its spillover options are used (default: lychagin2010)",
    )
    p.add_argument(
        "--bootstrap",
        type=non_negative_int,
        default=199,
        help="bootstrap resamples of firms for standard errors (default 199; 0: none)",
    )
    p.add_argument(
        "--table4-bootstrap",
        type=non_negative_int,
        help="resamples for Table 4's bootstrapped t (default: --bootstrap)",
    )
    p.add_argument("--workers", type=positive_int, help="bootstrap processes (default: CPU count, at most 4)")
    p.add_argument("--seed", type=arguments.seed, default=0, help="bootstrap seed")
    p.add_argument("--min-halflife-km", type=float, default=5.0)
    p.add_argument("--max-halflife-km", type=float, default=5000.0)
    p.add_argument("--out", help="also write OUT/baseline.json and OUT/bootstrap.csv")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_baseline)
