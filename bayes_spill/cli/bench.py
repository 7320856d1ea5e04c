"""`bayes-spill bench`: compile time, gradient cost and ESS/s per formulation, backend and sampler; with
--limits, where a fit's time goes for the default model and the baseline formulation."""

from __future__ import annotations

import json
from pathlib import Path

from bayes_spill.cli import arguments
from bayes_spill.cli.arguments import positive_int
from bayes_spill.errors import BayesSpillError
from bayes_spill.inference.bench import (
    BACKENDS,
    DEFAULT_BACKENDS,
    DEFAULT_FORMULATIONS,
    FORMULATIONS,
    SAMPLERS,
    format_tables,
    run_bench,
)


def add_commands(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure compile time, gradient cost and ESS/s per formulation, backend and sampler"
    )
    p.add_argument("--scales", default="1", help="comma-separated multiples of the paper's 688 firms (e.g. 1,4,10)")
    p.add_argument("--formulations", default=",".join(DEFAULT_FORMULATIONS), help=f"subset of {','.join(FORMULATIONS)}")
    p.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"subset of {','.join(BACKENDS)} (Python: no compilation, a reference)",
    )
    p.add_argument(
        "--samplers",
        default="",
        help="also sample every formulation with these (nutpie,pymc,numpyro); empty = gradients only",
    )
    p.add_argument(
        "--pairs",
        default="",
        help="also sample these formulation:sampler pairs, e.g. occupied:nutpie,all_counties_exact:pymc",
    )
    p.add_argument("--draws", type=arguments.draws, default=200)
    p.add_argument("--tune", type=arguments.tune, default=200)
    p.add_argument("--chains", type=arguments.chains, default=2)
    p.add_argument("--repeats", type=positive_int, default=50)
    p.add_argument(
        "--baseline-draws",
        type=arguments.draws,
        help="draws for the baseline run (all_counties_exact, pymc) when it is too slow at --draws",
    )
    p.add_argument("--baseline-tune", type=arguments.tune, help="tuning steps for the baseline run")
    p.add_argument(
        "--limits",
        action="store_true",
        help="also fit the default model and the baseline formulation with nutpie (--draws, --tune, --chains, "
        "at the first scale): wall split into build, compile, tuning and sampling, gradient cost per firm-year "
        "and per county, leapfrog steps per effective sample",
    )
    p.add_argument("--json", help="write the results as JSON to this file")
    p.set_defaults(func=cmd_bench)


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def cmd_bench(args) -> int:
    formulations, backends = _split(args.formulations), _split(args.backends)
    pairs = tuple(tuple(p.split(":", 1)) for p in _split(args.pairs))
    bad = [":".join(p) for p in pairs if len(p) != 2 or p[0] not in FORMULATIONS or p[1] not in SAMPLERS]
    if bad:
        raise BayesSpillError(
            f"bad --pairs entry {', '.join(bad)}: use formulation:sampler with formulations {', '.join(FORMULATIONS)} and samplers {', '.join(SAMPLERS)}"
        )
    for value, valid, what in ((formulations, FORMULATIONS, "formulation"), (backends, BACKENDS, "backend")):
        unknown = [v for v in value if v not in valid]
        if unknown:
            raise BayesSpillError(f"unknown {what}(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    result = run_bench(
        scales=tuple(float(s) for s in _split(args.scales)),
        formulations=formulations,
        backends=backends,
        samplers=_split(args.samplers),
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        repeats=args.repeats,
        baseline_draws=args.baseline_draws,
        baseline_tune=args.baseline_tune,
        pairs=pairs,
        limits=args.limits,
    )
    print(format_tables(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0
