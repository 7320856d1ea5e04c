"""The PyTensor mode of the fast suite's log-density checks: Python implementations (no C or Numba
compilation), without elementwise fusion or canonicalisation, which merge products and sums into
single operations of more than 32 operands (the interpolants of interpolation.py reach that), and
these the Python implementation refuses."""

from pytensor.compile.mode import get_mode

FAST = get_mode("FAST_COMPILE").excluding("fusion", "canonicalize")
