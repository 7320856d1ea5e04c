"""The PyTensor mode of the fast suite's log-density checks: Python implementations (no C or Numba
compilation), as bench.python_mode defines them (without the rewrites that make operations of more
than 32 operands, which the Python implementation refuses)."""

from bayes_spill.bench import python_mode

FAST = python_mode()
