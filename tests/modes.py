"""The PyTensor mode of the fast suite's log-density checks: Python implementations (no C or Numba
compilation), as bench.python_mode defines them (without the rewrites that make operations of more
than 32 operands, which the Python implementation refuses).

``logp_and_gradient``: a model's log-density and its gradient as one compiled function (PyMC's
compile_logp and compile_dlogp each build and rewrite the log-density graph: two compiles, and two
evaluations of it per point).

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


def logp_and_gradient(model, mode=FAST):
    """point (a dict of value variables) -> (log-density, gradient): the gradient flattened over
    model.value_vars in their order, as ``model.compile_dlogp()`` gives it; one compile in ``mode``."""
    import numpy as np
    from pymc.blocking import DictToArrayBijection

    fn = model.logp_dlogp_function(mode=mode, ravel_inputs=True)
    fn.set_extra_values({})
    names = [v.name for v in model.value_vars]

    def at(point):
        logp, grad = fn(DictToArrayBijection.map({name: np.asarray(point[name], dtype=float) for name in names}).data)
        return float(logp), np.asarray(grad)

    return at


@functools.cache
def industry80():
    """80 simulated firms (gamma 0.5, seed 11); do not modify it."""
    from bayes_spill.model.simulate import SimulationSettings, simulate_industry

    return simulate_industry(SimulationSettings(n_firms=80, gamma=0.5), seed=11)


@functools.cache
def compiled_model(path: str):
    """(model, logp_and_gradient) of the model file ``path`` on industry80(), compiled in FAST."""
    from bayes_spill.config import load_config
    from bayes_spill.model.likelihood import build_model

    model = build_model(industry80(), load_config(path))
    return model, logp_and_gradient(model)
