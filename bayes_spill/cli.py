"""The ``bayes-spill`` command: a thin layer that parses arguments and calls one library function.

Bad input (the package's own errors) is reported as one clear message and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from bayes_spill.errors import BayesSpillError
from bayes_spill.config import DEFAULT_MODEL, LARGE_PANEL_FIRMS, LARGE_PANEL_MODEL

DEFAULT_OUT_ROOT = Path("posterior")

# Modules that add their own subcommands: each defines ``add_commands(subparsers)`` and keeps
# its command functions beside the library code they call.
COMMAND_MODULES: tuple[str, ...] = ("bayes_spill.policy_commands", "bayes_spill.baseline_commands", "bayes_spill.check_commands", "bayes_spill.bench")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _year(text: str) -> int:
    value = int(text)
    if not 1000 <= value <= 9999:
        raise argparse.ArgumentTypeError(f"must be a 4-digit year, got {text}")
    return value


def cmd_fit(args: argparse.Namespace) -> int:
    from bayes_spill.fitting import fit, output_folder

    tree = fit(
        data=args.data,
        model=args.model,
        out=args.out,
        out_root=DEFAULT_OUT_ROOT,
        seed=args.seed,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        backend=args.sampler,
        counties=args.counties,
        progress=not args.no_progress,
    )
    out = output_folder(args.out, DEFAULT_OUT_ROOT, tree.attrs["model_name"])
    print(f"\nwrote {out / 'posterior.nc'} and {out / 'summary.csv'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from bayes_spill.inputs import load_panel, validation_report

    panel = load_panel(args.data, counties=args.counties)
    print(validation_report(panel))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bayes_spill.simulate import SimulationSettings, simulate_industry, write_simulation

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-spill",
        description="Knowledge spillovers, absorptive capacity and spatial sorting (Lychagin 2010) as one Bayesian model.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("fit", help="fit the joint model with NUTS and write DIR/posterior.nc and DIR/summary.csv")
    p.add_argument("--data", help="firm panel (CSV or Parquet, Compustat mnemonics); default: the embedded software industry")
    p.add_argument("--counties", help="county table (CSV or Parquet: fips, lat, lon, covariates); default: built in")
    p.add_argument(
        "--model",
        help=f"model TOML, or a name in models/ (default: {DEFAULT_MODEL} up to {LARGE_PANEL_FIRMS} firms, {LARGE_PANEL_MODEL} above)",
    )
    p.add_argument("--out", help="output folder (default: posterior/<model name>)")
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: the configuration's)")
    p.add_argument("--chains", type=positive_int)
    p.add_argument("--draws", type=positive_int)
    p.add_argument("--tune", type=non_negative_int)
    p.add_argument("--sampler", choices=("nutpie", "pymc", "numpyro"), help="NUTS implementation (default: the configuration's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("validate", help="check a firm panel without fitting and print what it holds")
    p.add_argument("--data", required=True, help="firm panel (CSV or Parquet)")
    p.add_argument("--counties", help="county table (default: built in)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("simulate", help="draw a synthetic industry from the model; writes panel.csv and truth.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--firms", type=positive_int)
    p.add_argument("--halflife-km", type=_finite_float)
    p.add_argument("--gamma", type=_finite_float)
    p.add_argument("--mu-alpha", type=_finite_float)
    p.add_argument("--sigma-alpha2", type=_finite_float)
    p.add_argument("--sigma-w", type=_finite_float)
    p.add_argument("--first-year", type=_year)
    p.add_argument("--last-year", type=_year)
    p.set_defaults(func=cmd_simulate)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    received: list[int] = []

    def interrupt(signum, frame):
        # SIGTERM (``kill``, a batch scheduler's time limit) is handled like Ctrl-C, so that the
        # atomic writers remove their temporary files and nothing half-written is left.
        received.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        previous = None
    try:
        return args.func(args)
    except BayesSpillError as exc:
        print(f"bayes-spill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output folder that cannot be created or written
        print(f"bayes-spill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bayes-spill {args.command}: interrupted; no partial output was written", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
