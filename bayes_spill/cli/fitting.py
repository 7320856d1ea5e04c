"""`bayes-spill fit`, `validate` and `simulate`: data and a model in, a posterior (or a panel) out."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayes_spill.cli.arguments import chains, draws, ess, finite_float, positive_int, seed, tune, year
from bayes_spill.config import DEFAULT_MODEL
from bayes_spill.errors import BayesSpillError

DEFAULT_OUT_ROOT = Path("posterior")


def cmd_fit(args: argparse.Namespace) -> int:
    from bayes_spill.inference import fit_folder
    from bayes_spill.inference.fitting import fit

    try:
        result = fit(
            data=args.data,
            model=args.model,
            out=args.out,
            out_root=DEFAULT_OUT_ROOT,
            seed=args.seed,
            chains=args.chains,
            draws=args.draws,
            tune=args.tune,
            ess=args.ess,
            backend=args.sampler,
            counties=args.counties,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt as exc:
        # interrupted before the fit's files were staged (sampling, say): say what --out holds
        if args.out is None or isinstance(exc, fit_folder.Interrupted):
            raise
        raise fit_folder.Interrupted(
            f"no partial output was written: {args.out} holds {fit_folder.describe_run(args.out)}, as before"
        ) from None
    print(
        f"\nwrote {result.path / 'posterior.nc'}, {result.path / 'summary.csv'} and {result.path / fit_folder.MANIFEST}"
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from bayes_spill.data.inputs import load_panel, validation_report

    panel = load_panel(args.data, counties=args.counties)
    print(validation_report(panel))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bayes_spill.model.simulate import SimulationSettings, simulate_industry, write_simulation

    changes = {
        key: value
        for key, value in {
            "n_firms": args.firms,
            "halflife_km": args.halflife_km,
            "gamma": args.gamma,
            "mu_alpha": args.mu_alpha,
            "sigma_alpha2": args.sigma_alpha2,
            "sigma_w": args.sigma_w,
            "first_year": args.first_year,
            "last_year": args.last_year,
        }.items()
        if value is not None
    }
    try:
        settings = replace(SimulationSettings(), **changes)
    except ValueError as exc:
        raise BayesSpillError(f"simulate: {exc}") from None
    panel = simulate_industry(settings, seed=args.seed)
    csv_path, truth_path = write_simulation(panel, args.out)
    summary = panel.summary()
    print(
        f"simulated {summary['firms']} firms, {summary['firm_years']} firm-years ({summary['years']}), "
        f"{summary['counties_occupied']} counties occupied; location fixed point after "
        f"{panel.truth['location_iterations']} iterations ({panel.truth['location_movers_at_stop']} firms still moving)"
    )
    print(f"wrote {csv_path} and {truth_path}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("fit", help="fit the joint model with NUTS and write DIR/posterior.nc and DIR/summary.csv")
    p.add_argument(
        "--data", help="firm panel (CSV or Parquet, Compustat mnemonics); default: the embedded software industry"
    )
    p.add_argument("--counties", help="county table (CSV or Parquet: fips, lat, lon, covariates); default: built in")
    p.add_argument(
        "--model",
        help=f"model TOML, or a name in models/ (default: {DEFAULT_MODEL})",
    )
    p.add_argument("--out", help="output folder (default: posterior/<model name>)")
    p.add_argument("--seed", type=seed, help="random seed (default: the configuration's)")
    p.add_argument("--chains", type=chains)
    amount = p.add_mutually_exclusive_group()
    amount.add_argument(
        "--ess",
        type=ess,
        help="sample until every key parameter has bulk and tail ESS >= N and R-hat <= 1.01, continuing "
        "the same chains (default: the model's sampler.ess; nutpie only)",
    )
    amount.add_argument("--draws", type=draws, help="draw exactly N per chain (turns the ESS rule off)")
    p.add_argument("--tune", type=tune)
    p.add_argument(
        "--sampler", choices=("nutpie", "pymc", "numpyro"), help="NUTS implementation (default: the configuration's)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("validate", help="check a firm panel without fitting and print what it holds")
    p.add_argument("--data", required=True, help="firm panel (CSV or Parquet)")
    p.add_argument("--counties", help="county table (default: built in)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("simulate", help="draw a synthetic industry from the model; writes panel.csv and truth.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--firms", type=positive_int)
    p.add_argument("--halflife-km", type=finite_float)
    p.add_argument("--gamma", type=finite_float)
    p.add_argument("--mu-alpha", type=finite_float)
    p.add_argument("--sigma-alpha2", type=finite_float)
    p.add_argument("--sigma-w", type=finite_float)
    p.add_argument("--first-year", type=year)
    p.add_argument("--last-year", type=year)
    p.set_defaults(func=cmd_simulate)
