"""The PyTensor mode of the fast suite's log-density checks: Python implementations (no C or Numba
compilation), as bench.python_mode defines them (without the rewrites that make operations of more
than 32 operands, which the Python implementation refuses)."""

from bayes_spill.inference.bench import python_mode

FAST = python_mode()


def value_function(model, outputs):
    """outputs (a variable or a list) of a PyMC model as a function of a point (a dict of value
    variables), compiled in FAST."""
    import pymc as pm

    outputs = model.replace_rvs_by_values(outputs if isinstance(outputs, list) else [outputs])
    fn = pm.compile(model.value_vars, outputs if len(outputs) > 1 else outputs[0], on_unused_input="ignore", mode=FAST)
    return lambda point: fn(*(point[v.name] for v in model.value_vars))
