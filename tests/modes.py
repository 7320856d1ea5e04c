"""The PyTensor mode of the fast suite's log-density checks: Python implementations (no C or Numba
compilation), as bench.python_mode defines them (without the rewrites that make operations of more
than 32 operands, which the Python implementation refuses).

Also the simulated industry that the model and interpolation tests share, and each model file's
log-density and gradient on it, compiled once per process: both files check them (finite at the
initial point; equal to the exact sums), and the compile is most of either check's time (the two
files are one xdist unit, tests/conftest.py)."""

import functools

from bayes_spill.inference.bench import python_mode

FAST = python_mode()


def value_function(model, outputs):
    """outputs (a variable or a list) of a PyMC model as a function of a point (a dict of value
    variables), compiled in FAST."""
    import pymc as pm

    outputs = model.replace_rvs_by_values(outputs if isinstance(outputs, list) else [outputs])
    fn = pm.compile(model.value_vars, outputs if len(outputs) > 1 else outputs[0], on_unused_input="ignore", mode=FAST)
    return lambda point: fn(*(point[v.name] for v in model.value_vars))


@functools.cache
def industry80():
    """80 simulated firms (gamma 0.5, seed 11); do not modify it."""
    from bayes_spill.model.simulate import SimulationSettings, simulate_industry

    return simulate_industry(SimulationSettings(n_firms=80, gamma=0.5), seed=11)


@functools.cache
def compiled_model(path: str):
    """(model, logp, dlogp) of the model file ``path`` on industry80(), compiled in FAST."""
    from bayes_spill.config import load_config
    from bayes_spill.model.likelihood import build_model

    model = build_model(industry80(), load_config(path))
    return model, model.compile_logp(mode=FAST), model.compile_dlogp(mode=FAST)
