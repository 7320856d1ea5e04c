"""The PyTensor mode of the fast suite's log-density checks: Python implementations (no C or Numba
compilation), without elementwise fusion, whose Python implementation refuses fused operations of
more than 32 operands (the quintic interpolants of interpolation.py reach that)."""

from pytensor.compile.mode import get_mode

FAST = get_mode("FAST_COMPILE").excluding("fusion")
