"""Subcommands for policy work on a fitted posterior: ``counterfactual`` (Table 6), ``sorting``
(Proposition 1) and ``equilibrium two-city`` / ``equilibrium counties`` (Section 2.6, Figure 1,
and an L-county re-solve after a shock). Heavy libraries are imported inside the commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayes_spill import paper
from bayes_spill.cli.arguments import positive_int

DEFAULT_TWO_CITY_OUT = Path("posterior") / "two_city"


def _fips_list(text: str) -> list[str]:
    codes = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in codes if not (c.isdigit() and len(c) == 5)]
    if bad:
        raise argparse.ArgumentTypeError(f"FIPS codes are 5 digits (e.g. 06085); got {', '.join(bad)}")
    return codes


def _fips(text: str) -> str:
    codes = _fips_list(text)
    if len(codes) != 1:
        raise argparse.ArgumentTypeError(f"one 5-digit FIPS code expected, got {text!r}")
    return codes[0]


def _damping(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"the damping must be in (0, 1], got {text}")
    return value


def _tau_grid(text: str) -> list[float]:
    """'1:2.5:151' (start:stop:points) or a comma list '1,1.2,1.5'."""
    try:
        if ":" in text:
            start, stop, points = text.split(":")
            import numpy as np

            values = np.linspace(float(start), float(stop), int(points)).tolist()
        else:
            values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a tau grid is START:STOP:POINTS or a comma list, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("iceberg costs tau must be at least 1")
    return values


def _write_csv(frame, path: Path) -> None:
    from bayes_spill.inference.posterior_io import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _world(args: argparse.Namespace):
    """The fitted world of DIR with --draws draws (its configuration parsed once, by the Fit)."""
    from bayes_spill.inference.results import FittedModel
    from bayes_spill.policy.world import load_world

    return load_world(FittedModel.load(args.dir, counties=args.counties), max_draws=args.draws)


def _output(args: argparse.Namespace, default_name: str, command: str):
    """(path, context) for a command's CSV: checked writable before the work; inside the fit
    folder, committed onto the run that was read (fit_folder.output_file)."""
    from bayes_spill.inference.fit_folder import output_file

    folder = Path(args.dir).parent if Path(args.dir).is_file() else Path(args.dir)  # DIR or DIR/posterior.nc
    out = Path(args.out) if args.out else folder / default_name
    return out, output_file(out, folder, command)


def cmd_counterfactual(args: argparse.Namespace) -> int:
    from bayes_spill.policy import table6 as t6
    from bayes_spill.policy.world import attach_truth

    out, output = _output(args, f"counterfactual_{args.county}_{args.year}_{args.alpha}.csv", "counterfactual")
    with output as target:
        world = _world(args)
        if args.truth:
            world = attach_truth(world, args.truth)
        sales = t6.read_county_sales(args.county_sales) if args.county_sales else None
        options = dict(neighbors=args.neighbors, alpha=args.alpha, county_sales=sales, radius_km=args.radius_km)
        result = t6.table6(world, args.county, args.rd_stock, args.year, **options)
        if world.panel.truth is not None and "alpha" in world.panel.truth:
            result = result.with_truth(t6.table6_truth(world, args.county, args.rd_stock, args.year, **options))
        print(t6.format_table6(result))
        for note in world.notes:
            print(f"note: {note}")
        _write_csv(result.summary(), target)
    print(f"\nwrote {out}")
    return 0


def cmd_sorting(args: argparse.Namespace) -> int:
    from bayes_spill.policy import proposition1 as p1

    out, output = _output(args, "sorting.csv", "sorting")
    with output as target:
        world = _world(args)
        pairs = p1.parse_pairs(args.pairs) if args.pairs else p1.default_pairs(world)
        results = p1.sorting_dominance(world, pairs)
        print(p1.format_sorting(results, world.draws.n_draws))
        _write_csv(p1.sorting_table(results), target)
    print(f"\nwrote {out}")
    return 0


def cmd_two_city(args: argparse.Namespace) -> int:
    from bayes_spill.policy import two_city

    params = two_city.TwoCity(sigma=args.sigma, b=args.b, lam=args.lam, distance_km=args.distance_km)
    table = two_city.two_city_table(args.tau_grid, params)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "figure1.png"
    panel_a = args.panel_a_taus or _panel_a_taus(table)
    two_city.plot_figure1(params, args.tau_grid, panel_a, png)
    _write_csv(table, out / "equilibria.csv")
    print(
        f"Two-city model (Section 2.6): sigma = {params.sigma:g}, b = {params.b:g} (gamma = {params.gamma:g}), "
        f"lambda = {params.lam:.4g}/km, distance {params.distance_km:g} km (exp(-lambda d) = {params.decay:.3f})"
    )
    print(two_city.format_two_city(table))
    print(f"\nwrote {png} and {out / 'equilibria.csv'}")
    return 0


def _panel_a_taus(table) -> list[float]:
    """Three taus for Figure 1a: the lowest, one with the most equilibria, the highest."""
    taus = sorted(table["tau"].unique())
    counts = table.groupby("tau")["n_equilibria"].first()
    most = float(counts.idxmax())
    chosen = [taus[0], most, taus[-1]]
    return list(dict.fromkeys(chosen))


def cmd_counties(args: argparse.Namespace) -> int:
    from bayes_spill.policy import equilibrium as eq

    out, output = _output(args, f"equilibrium_{args.shock_county}.csv", "equilibrium counties")
    with output as target:
        world = _world(args)
        result = eq.county_shock(world, args.shock_county, args.shock_rd_stock, damping=args.damping)
        print(eq.format_county_shock(result))
        _write_csv(result.county_table(), target)
    print(f"\nwrote {out}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "counterfactual",
        help="Table 6: sales gains from an R&D entrant in a county and its neighbours, by mechanism, with credible intervals",
    )
    p.add_argument("dir", help="fit folder (or posterior.nc) written by 'bayes-spill fit'")
    p.add_argument("--county", type=_fips, required=True, help="FIPS of the county the entrant enters, e.g. 06085")
    p.add_argument("--rd-stock", type=float, required=True, help="the entrant's R&D stock, $ million (the paper: 220)")
    p.add_argument("--year", type=int, required=True, help="the year of entry (the paper: 2002)")
    p.add_argument(
        "--neighbors",
        type=_fips_list,
        help="comma-separated FIPS to report (default: counties with sample firms within --radius-km)",
    )
    p.add_argument("--radius-km", type=float, default=100.0, help="radius of the default neighbours (default 100 km)")
    p.add_argument("--county-sales", help="table with columns fips, sales ($ million) for the dollar gains")
    p.add_argument(
        "--alpha",
        choices=("firm", "implied"),
        default="firm",
        help="firm: posterior alpha_i of the county's sample firms (default); implied: model-implied f(alpha | county)",
    )
    p.add_argument(
        "--draws", type=positive_int, default=1000, help="posterior draws to use, evenly thinned (default 1000)"
    )
    p.add_argument("--counties", help="county table used for the fit, if not the built-in one")
    p.add_argument(
        "--truth",
        help="truth.json of a simulation (from 'bayes-spill simulate'): show the true cells beside the intervals",
    )
    p.add_argument("--out", help="CSV to write (default: DIR/counterfactual_<county>_<year>_<alpha>.csv)")
    p.set_defaults(func=cmd_counterfactual)

    p = sub.add_parser(
        "sorting",
        help="Proposition 1: posterior probability that a higher-spillover county's alpha distribution dominates",
    )
    p.add_argument("dir", help="fit folder (or posterior.nc)")
    p.add_argument(
        "--pairs",
        help="county pairs A:B separated by commas, e.g. 06085:06087,06085:06081 (default: the largest county vs the next four)",
    )
    p.add_argument(
        "--draws", type=positive_int, default=1000, help="posterior draws to use, evenly thinned (default 1000)"
    )
    p.add_argument("--counties", help="county table used for the fit, if not the built-in one")
    p.add_argument("--out", help="CSV to write (default: DIR/sorting.csv)")
    p.set_defaults(func=cmd_sorting)

    p = sub.add_parser(
        "equilibrium", help="location equilibria: the two-city model (Figure 1) or the fitted counties after a shock"
    )
    eq_sub = p.add_subparsers(dest="equilibrium_command", metavar="KIND", required=True)

    q = eq_sub.add_parser(
        "two-city", help="Section 2.6: every equilibrium share of city 1 on a grid of iceberg costs; draws Figure 1"
    )
    q.add_argument("--sigma", type=float, default=5.0, help="CES elasticity of substitution (default 5)")
    q.add_argument(
        "--b",
        type=float,
        default=1.0,
        help="scale of the location preference shocks; gamma = (sigma - 1) / b (default 1)",
    )
    q.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=paper.LN2 / paper.HALFLIFE_KM,
        help="spillover decay per km (default ln2/59: a 59 km half-life)",
    )
    q.add_argument("--distance-km", type=float, default=100.0, help="distance between the two cities, km (default 100)")
    q.add_argument(
        "--tau-grid",
        type=_tau_grid,
        default=_tau_grid("1:2.5:151"),
        help="iceberg costs: START:STOP:POINTS or a comma list (default 1:2.5:151)",
    )
    q.add_argument(
        "--panel-a-taus", type=_tau_grid, help="taus drawn in Figure 1a (default: lowest, most equilibria, highest)"
    )
    q.add_argument(
        "--out",
        default=str(DEFAULT_TWO_CITY_OUT),
        help=f"output folder for figure1.png and equilibria.csv (default {DEFAULT_TWO_CITY_OUT})",
    )
    q.set_defaults(func=cmd_two_city)

    q = eq_sub.add_parser(
        "counties",
        help="re-solve the fitted location equilibrium after an R&D shock in one county (migrating clusters)",
    )
    q.add_argument("dir", help="fit folder (or posterior.nc)")
    q.add_argument("--shock-county", type=_fips, required=True, help="FIPS of the county where the R&D appears")
    q.add_argument("--shock-rd-stock", type=float, required=True, help="exogenous R&D stock added there, $ million")
    q.add_argument(
        "--draws", type=positive_int, default=100, help="posterior draws to solve, evenly thinned (default 100)"
    )
    q.add_argument(
        "--damping",
        type=_damping,
        default=0.5,
        help="weight of the new iterate in the damped fixed point (default 0.5)",
    )
    q.add_argument("--counties", help="county table used for the fit, if not the built-in one")
    q.add_argument("--out", help="CSV to write (default: DIR/equilibrium_<county>.csv)")
    q.set_defaults(func=cmd_counties)
