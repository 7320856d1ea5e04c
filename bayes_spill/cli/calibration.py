"""`bayes-spill calibrate sbc|montecarlo`: calibration studies of the joint model. Heavy
libraries are imported inside the command functions."""

from __future__ import annotations

import argparse

from bayes_spill.cli import arguments
from bayes_spill.cli.arguments import positive_int


def _override(spec, args: argparse.Namespace, mapping: dict[str, str]):
    from dataclasses import replace

    changes = {field: getattr(args, arg) for arg, field in mapping.items() if getattr(args, arg, None) is not None}
    return replace(spec, **changes)


def cmd_sbc(args: argparse.Namespace) -> int:
    from bayes_spill.calibration.config import check_sbc, load_calibration
    from bayes_spill.calibration.sbc import run_sbc

    cal = load_calibration(args.config)
    spec = _override(
        cal.sbc,
        args,
        {
            "sims": "sims",
            "firms": "firms",
            "draws": "draws",
            "tune": "tune",
            "chains": "chains",
            "ranks": "ranks",
            "bins": "bins",
            "seed": "seed",
        },
    )
    if args.sampler:
        cal = _with_sampler(cal, args.sampler)
    check_sbc(spec, "command line")
    return _run_study(run_sbc, args, cal, spec, f"SBC in {args.out}", f"{spec.sims} simulations of {spec.firms} firms")


def cmd_montecarlo(args: argparse.Namespace) -> int:
    from bayes_spill.calibration.config import check_montecarlo, load_calibration
    from bayes_spill.calibration.montecarlo import run_montecarlo

    cal = load_calibration(args.config)
    mapping = {
        "datasets": "datasets",
        "firms": "firms",
        "draws": "draws",
        "tune": "tune",
        "chains": "chains",
        "bootstrap": "bootstrap",
        "seed": "seed",
    }
    spec = _override(cal.montecarlo, args, mapping)
    if args.methods:
        from dataclasses import replace

        spec = replace(spec, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()))
    if args.sampler:
        cal = _with_sampler(cal, args.sampler)
    check_montecarlo(spec, "command line")
    what = f"{spec.datasets} datasets of {spec.firms} firms, methods {', '.join(spec.methods)}"
    return _run_study(run_montecarlo, args, cal, spec, f"Monte Carlo in {args.out}", what)


def _run_study(run, args: argparse.Namespace, cal, spec, title: str, what: str) -> int:
    """Run (or resume) a study, or with --report-only summarise what is stored; print the report."""
    from bayes_spill.calibration.executors import make_executor

    if args.report_only:
        _, text = run(args.out, cal, spec, report_only=True)
        print(text)
        return 0
    executor = make_executor(args.workers, args.scheduler)
    print(f"{title} on {executor.name}: {what}", flush=True)
    record, text = run(args.out, cal, spec, executor, progress=not args.no_progress)
    print(text)
    return 130 if record.interrupted else 0


def _with_sampler(cal, sampler: str):
    from dataclasses import replace

    return replace(cal, sampler=sampler)


def _study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", help="calibration TOML, or a name in models/studies/ (default: models/studies/calibration.toml)"
    )
    p.add_argument("--workers", type=positive_int, help="local worker processes (default: the CPU count)")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a Dask distributed cluster (e.g. tcp://host:8786) instead of a local pool",
    )
    p.add_argument("--draws", type=arguments.draws)
    p.add_argument("--tune", type=arguments.tune)
    p.add_argument("--chains", type=arguments.chains)
    p.add_argument("--firms", type=positive_int, help="firms per simulated industry")
    p.add_argument("--seed", type=arguments.seed, help="study seed (prior draws, data and fit seeds)")
    p.add_argument(
        "--sampler", choices=("nutpie", "pymc", "numpyro"), help="NUTS implementation (default: the model's)"
    )
    p.add_argument(
        "--report-only", action="store_true", help="fit nothing: summarise the replicates already stored in --out"
    )
    p.add_argument("--no-progress", action="store_true")


def add_commands(sub) -> None:
    cal = sub.add_parser(
        "calibrate", help="calibration studies of the joint model: SBC, and a Monte Carlo against the two-step"
    )
    studies = cal.add_subparsers(dest="study", metavar="STUDY", required=True)

    p = studies.add_parser("sbc", help="simulation-based calibration; resumes when run again on the same --out")
    p.add_argument("--out", default="posterior/sbc", help="study folder (default: posterior/sbc)")
    p.add_argument("--sims", type=positive_int, help="simulations (default: the configuration's, 100)")
    p.add_argument("--ranks", type=positive_int, help="thinned posterior draws per rank, L")
    p.add_argument("--bins", type=positive_int, help="chi-square bins ((L + 1) must be a multiple)")
    _study_options(p)
    p.set_defaults(func=cmd_sbc)

    p = studies.add_parser("montecarlo", help="joint model vs two-step on simulated industries; resumes when run again")
    p.add_argument("--out", default="posterior/montecarlo", help="study folder (default: posterior/montecarlo)")
    p.add_argument("--datasets", type=positive_int, help="simulated datasets (default: the configuration's, 20)")
    p.add_argument("--bootstrap", type=positive_int, help="two-step bootstrap resamples per dataset")
    p.add_argument("--methods", help="comma-separated: joint,twostep (default: both)")
    _study_options(p)
    p.set_defaults(func=cmd_montecarlo)
