"""The logit's denominator LSE(c) = log sum_l exp(a_l + c Sbar_l), c = gamma alpha_i: the sum that
costs firms x counties (firms x quadrature nodes x counties with alpha_i integrated out), and the
certified ways the model evaluates it.

1. ``exact_log_denominator``: the direct sum, numpy or PyTensor; ``log_denominator_with_slope``
   adds LSE'(c), the softmax mean of Sbar.

2. ``log_denominator`` (PyTensor): the exponential sum by binned Taylor expansion, exact to a
   relative error per firm fixed by the number of terms, chosen so that the whole location
   log-likelihood is within half of model.likelihood_tolerance.

3. Cubic Hermite tables in c (one basis, ``cubic_hermite``), for many rows: LSE and its derivative
   are summed directly at nodes in c and each row reads the cubic between its two neighbours, which
   errs by at most (dc range(Sbar))^4 / CUBIC_ERROR_DENOMINATOR:
   ``tabulated_log_denominator`` (PyTensor, in the alpha_i-integrated likelihood: a power-of-two
   lattice from the row error) and ``log_denominator_table`` with ``evaluate_log_denominator`` and
   ``evaluate_log_denominator_slope`` (numpy: the alpha_i draws of an integrated fit and the
   two-step estimator's location likelihood).

Each is checked against the direct sum, within its bound, in tests/model/test_denominator.py.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# ---------------------------------------------------------------------------------------------
# LSE(c) directly, and by binned Taylor expansion
# ---------------------------------------------------------------------------------------------

TAYLOR_RADIUS = 1.0  # |c_i (Sbar_m - centre of m's bin)| is kept at or below this
# Near the paper's values 1-2 bins are needed; beyond this many the rows that need more get the
# direct sum (the moments and the firms x bins product stay small wherever the sampler goes).
MAX_DYNAMIC_BINS = 64


def exact_log_denominator(county_effect, sbar, c, backend=np):
    """log sum_l exp(a_l + c_i Sbar_l) for every firm, directly (firms x counties). county_effect
    and sbar are (L,), shared by every row, or (numpy) (rows, L), one pair per row of c."""
    if backend is np:
        # in place in one array (the same numbers): the pointwise log-likelihood after sampling
        # calls this for every draw on firms x counties, where new arrays of that size cost time
        terms = c[:, None] * _rows(sbar)
        terms += _rows(county_effect)
        top = terms.max(axis=1, keepdims=True)
        terms -= top
        np.exp(terms, out=terms)
        return (top + np.log(terms.sum(axis=1, keepdims=True)))[:, 0]
    import pytensor.tensor as pt

    return pt.logsumexp(_logits(county_effect, sbar, c), axis=1)


def log_denominator_with_slope(county_effect, sbar, c, backend=np):
    """(LSE(c_i), LSE'(c_i)) directly, numpy or PyTensor: the derivative is the softmax mean of Sbar."""
    value = exact_log_denominator(county_effect, sbar, c, backend)
    weights = backend.exp(_logits(county_effect, sbar, c) - value[:, None])
    return value, (weights * _rows(sbar)).sum(axis=1)


def _rows(x):
    """x as rows against c[:, None]: (1, L) when shared, as it is when one row per c."""
    return x if x.ndim == 2 else x[None, :]


def _logits(county_effect, sbar, c):
    return _rows(county_effect) + c[:, None] * _rows(sbar)


def taylor_relative_error(terms: int, radius: float = TAYLOR_RADIUS) -> float:
    """max over |x| <= radius of |exp(x) - sum_{j < terms} x^j / j!| / exp(x): the Lagrange
    remainder radius^terms e^radius / terms!, over exp(x) >= e^-radius."""
    return radius**terms * math.exp(2.0 * radius) / math.factorial(terms)


def taylor_terms(n_firms: int, tolerance: float) -> int:
    """The fewest terms for which the location log-likelihood errs by at most tolerance / 2: a
    relative error e <= 1/2 in a firm's sum moves its log by at most 2e, so 2 n_firms e <= tolerance / 2."""
    terms = 2
    while 2.0 * n_firms * taylor_relative_error(terms) > 0.5 * tolerance:
        terms += 1
    return terms


def bins_needed(c_max_abs: float, sbar_range: float) -> int:
    """Bins of Sbar's range that keep |c (Sbar - centre)| <= TAYLOR_RADIUS (numpy; the graph repeats it)."""
    return max(1, math.ceil(c_max_abs * sbar_range / (2.0 * TAYLOR_RADIUS)))


def log_denominator(county_effect, sbar, c, terms: int, fixed_bins: int | None = None):
    """PyTensor: LSE(c_i) = log sum_m exp(a_m + c_i Sbar_m) for every firm, in
    O(counties x terms + firms x bins x terms) instead of O(firms x counties).

    Sbar's range is cut into B bins of width W with |c_i| W / 2 <= TAYLOR_RADIUS for every firm.
    In bin b, with centre s_b, exp(c Sbar_m) = exp(c s_b) exp(c u_m), u_m = Sbar_m - s_b, and the
    second factor is its Taylor series to ``terms`` terms, so

        sum_m exp(a_m + c Sbar_m) ~ sum_b exp(c s_b) sum_j c^j M_bj,  M_bj = sum_{m in b} e^{a_m} u_m^j / j!

    The moments M (bins x terms) are one pass over the counties; every firm is then a row of one
    matrix product and a sum over bins. Each county's term errs by at most
    taylor_relative_error(terms) relative to itself, hence so does the sum, for every parameter
    value: no certificate to recompute, and the gradient is the exact gradient of this expression.

    fixed_bins None (Numba, C): B is chosen at every evaluation, at most MAX_DYNAMIC_BINS; the rows
    whose |c_i| those bins cannot hold within the radius (far outside where the posterior has mass,
    e.g. in a diverging trajectory) get the direct sum, computed for those rows only. fixed_bins K
    (JAX, static shapes): K bins, and the direct sum selected for the rows K bins cannot hold
    (both are computed under JAX). Returns (lse, bins); with fixed_bins, bins is 0 where any row
    needed the direct sum."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

    s_lo, s_hi = pt.min(sbar), pt.max(sbar)
    needed = disconnected_grad(
        pt.maximum(1, pt.ceil(pt.max(pt.abs(c)) * (s_hi - s_lo) / (2.0 * TAYLOR_RADIUS))).astype("int64")
    )
    bins = pt.minimum(needed, MAX_DYNAMIC_BINS) if fixed_bins is None else pt.constant(fixed_bins, dtype="int64")
    # the largest |c| that bins of this width hold within the radius (2e12 x bins for a flat field)
    held = disconnected_grad(2.0 * TAYLOR_RADIUS * bins / pt.maximum(s_hi - s_lo, 1e-12))
    inside = pt.le(pt.abs(c), held)
    # Rows outside enter the expansion as c = 0, so that nothing in it overflows (nor in its
    # gradient), and are replaced by the direct sum below. (The range's floor is 1e-12, not 1e-300:
    # a held of 1e302 on a flat field made the half-life gradient NaN. pt.clip here failed to
    # compile under Numba.)
    expansion = _binned_expansion(county_effect, sbar, pt.switch(inside, c, 0.0), terms, bins)
    if fixed_bins is not None:
        direct = exact_log_denominator(county_effect, sbar, c, pt)
        return pt.switch(inside, expansion, direct), pt.switch(pt.all(inside), fixed_bins, 0)
    outside = pt.nonzero(pt.invert(inside))[0]
    return pt.set_subtensor(expansion[outside], exact_log_denominator(county_effect, sbar, c[outside], pt)), bins


def _binned_expansion(county_effect, sbar, c, terms: int, bins):
    """The binned Taylor expansion of log_denominator with a given number of bins (all |c_i| within
    the radius: the caller's business)."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

    # scaling c by C >= max|c_i| keeps every power in [-1, 1]; the expression does not depend on C
    # (its floor keeps C^-terms finite where PyTensor rewrites (c/C)^j as c^j / C^j)
    scale = disconnected_grad(pt.maximum(pt.max(pt.abs(c)), 1e-15))
    s_lo, s_hi = pt.min(sbar), pt.max(sbar)
    width = (s_hi - s_lo) / bins
    index = pt.clip(pt.floor((sbar - s_lo) / pt.maximum(width, 1e-300)), 0, bins - 1).astype("int64")
    centre = s_lo + (pt.arange(bins) + 0.5) * width
    top = disconnected_grad(pt.max(county_effect))
    moments = pt.zeros((bins, terms))[index].inc(
        _scaled_powers(scale * (sbar - centre[index]), terms, factorial=True) * pt.exp(county_effect - top)[:, None]
    )
    inner = pt.dot(_scaled_powers(c / scale, terms, factorial=False), moments.T)  # (firms, bins), >= 0
    # max_m c Sbar_m: every bin's exp(c s_b - shift) <= e^radius, and the extreme county's bin is not empty
    shift = disconnected_grad(pt.maximum(c * s_hi, c * s_lo))
    return top + shift + pt.log((pt.exp(c[:, None] * centre[None, :] - shift[:, None]) * inner).sum(axis=1))


def _scaled_powers(x, terms: int, factorial: bool):
    """(len(x), terms): x^j, or x^j / j!. Built as x^(4a + b) = (x^4)^a x^b, an outer product of
    two short power lists: a few multiplications per entry instead of a power function, several
    times faster with its gradient (docs/performance.md, "Powers in the expansion")."""
    import pytensor.tensor as pt

    one = pt.ones_like(x)
    x2 = x * x
    low = pt.stack([one, x, x2, x2 * x], axis=1)  # x^0..x^3
    x4 = x2 * x2
    high = [one]
    for _ in range(1, -(-terms // 4)):
        high.append(high[-1] * x4)
    powers = (pt.stack(high, axis=1)[:, :, None] * low[:, None, :]).reshape((x.shape[0], 4 * len(high)))[:, :terms]
    if not factorial:
        return powers
    return powers / np.array([math.factorial(j) for j in range(terms)], dtype=float)


# ---------------------------------------------------------------------------------------------
# LSE(c) for many rows: a cubic Hermite table in c
# ---------------------------------------------------------------------------------------------

# (dc R)^4 / CUBIC_ERROR_DENOMINATOR bounds the table's error, R = range(Sbar): cubic Hermite errs
# by at most dc^4 max|LSE''''| / 384, and LSE'''' is the fourth cumulant of Sbar under the softmax,
# between -2 Var^2 >= -R^4/8 and mu_4 <= 0.106 R^4: both tables below rely on it.
CUBIC_ERROR_DENOMINATOR = 384.0 * 8.0


def cubic_hermite(t, width, f0, d0, f1, d1):
    """The cubic matching value and first derivative at both ends of an interval of the given
    width, at relative position t in [0, 1]; numpy arrays or PyTensor tensors. It errs by at most
    width^4 max|f''''| / 384."""
    s = 1.0 - t
    return (1.0 + 2.0 * t) * s * s * f0 + t * t * (3.0 - 2.0 * t) * f1 + width * t * s * (s * d0 - t * d1)


def cubic_hermite_slope(t, width, f0, d0, f1, d1):
    """The derivative in x of ``cubic_hermite`` at relative position t (x = x0 + t width).

    The basis' derivatives are 6t^2 - 6t (f0), 3t^2 - 4t + 1 (d0), -(6t^2 - 6t) (f1) and
    3t^2 - 2t (d1); each shared term is computed once (the bisection of the alpha draws reads this
    tens of millions of times), rounded as the terms one by one would be."""
    six_t = 6 * t
    d00 = six_t * t - six_t
    three_tt = 3 * t * t
    return (d00 * f0 - d00 * f1) / width + (three_tt - 4 * t + 1) * d0 + (three_tt - 2 * t) * d1


# -- the numpy table: equally spaced nodes over the c the caller needs ---------------------------------
# node spacing dc with dc (max Sbar - min Sbar) <= C_STEP, so that the error is at most
# C_STEP^4 / CUBIC_ERROR_DENOMINATOR (3e-8)
C_STEP = 0.1
MAX_C_NODES = 4097


class LogDenominatorTable(NamedTuple):
    """LSE and LSE' at equally spaced nodes ``grid`` in c."""

    grid: np.ndarray
    value: np.ndarray
    slope: np.ndarray


class LogDenominatorTables(NamedTuple):
    """One LogDenominatorTable per row of a batch (a posterior draw each), end to end: row r's
    nodes are ``grid[start[r] : start[r] + size[r]]``. Read by the same evaluate functions, with
    the rows on the leading axis of c."""

    grid: np.ndarray
    value: np.ndarray
    slope: np.ndarray
    start: np.ndarray
    size: np.ndarray


def log_denominator_table(
    county_effect: np.ndarray, sbar: np.ndarray, c_lo: float, c_hi: float, nodes: int | None = None
) -> LogDenominatorTable:
    """LSE(c) and its derivative (the softmax mean of Sbar) on a grid of [c_lo, c_hi] (numpy).

    Parameters
    ----------
    county_effect, sbar : ndarray
        a_l and Sbar_l over the choice set.
    c_lo, c_hi : float
        The range of c to cover.
    nodes : int or None
        None spaces the nodes by C_STEP / range(Sbar) (at most MAX_C_NODES), which bounds the
        error by C_STEP^4 / CUBIC_ERROR_DENOMINATOR (3e-8); a number fixes the nodes.

    Returns
    -------
    LogDenominatorTable
        Read by ``evaluate_log_denominator`` and ``evaluate_log_denominator_slope``.
    """
    grid = _table_grid(sbar, c_lo, c_hi, nodes)
    return LogDenominatorTable(grid, *log_denominator_with_slope(county_effect, sbar, grid, np))


def log_denominator_tables(
    county_effect: np.ndarray, sbar: np.ndarray, c_lo: np.ndarray, c_hi: np.ndarray
) -> LogDenominatorTables:
    """``log_denominator_table`` for each row of a batch, the sums of all rows in one pass: row r's
    table is log_denominator_table(county_effect[r], sbar[r], c_lo[r], c_hi[r]) to the bit.

    Parameters
    ----------
    county_effect, sbar : ndarray
        (rows, L): a_l and Sbar_l over the choice set, one pair per row.
    c_lo, c_hi : ndarray
        (rows,): each row's range of c.

    Returns
    -------
    LogDenominatorTables
        Read by ``evaluate_log_denominator`` and ``evaluate_log_denominator_slope`` with c of
        shape (rows, ...).
    """
    grids = [_table_grid(s, float(lo), float(hi)) for s, lo, hi in zip(sbar, c_lo, c_hi)]
    size = np.array([len(g) for g in grids])
    owner = np.repeat(np.arange(len(grids)), size)
    grid = np.concatenate(grids)
    value, slope = log_denominator_with_slope(county_effect[owner], sbar[owner], grid, np)
    return LogDenominatorTables(grid, value, slope, np.cumsum(size) - size, size)


def log_denominator_within(county_effect: np.ndarray, sbar: np.ndarray, c: np.ndarray, row_error: float) -> np.ndarray:
    """numpy: LSE(c) for every entry of c (a_l and Sbar_l shared), each within row_error of the
    direct sum: read from a cubic Hermite table with dc range(Sbar) <= (3072 row_error)^(1/4)
    where that takes fewer nodes than a quarter of the entries (the table sums nodes x counties
    twice, the direct sum entries x counties), else the direct sum."""
    lo, hi = float(np.min(c)), float(np.max(c))
    spread = float(np.max(sbar) - np.min(sbar))
    nodes = math.ceil((hi - lo) * spread / (CUBIC_ERROR_DENOMINATOR * row_error) ** 0.25) + 1
    if not hi > lo or nodes > min(MAX_C_NODES, len(c) // 4):
        return exact_log_denominator(county_effect, sbar, c)
    return evaluate_log_denominator(log_denominator_table(county_effect, sbar, lo, hi, max(nodes, 2)), c)


def _table_grid(sbar: np.ndarray, c_lo: float, c_hi: float, nodes: int | None = None) -> np.ndarray:
    if nodes is None:
        spread = float(sbar.max() - sbar.min())
        nodes = int(min(MAX_C_NODES, max(3, math.ceil((c_hi - c_lo) * spread / C_STEP) + 1)))
    return np.linspace(c_lo, c_hi, nodes) if c_hi > c_lo else np.array([c_lo, c_lo + 1.0])


def _hermite_piece(table: LogDenominatorTable | LogDenominatorTables, c: np.ndarray):
    """(node index j, relative position t in its interval, node spacing) of each c."""
    grid = table.grid
    if isinstance(table, LogDenominatorTables):
        rows = (-1,) + (1,) * (np.ndim(c) - 1)
        start = table.start.reshape(rows)
        first, width, last = grid[start], grid[start + 1] - grid[start], (table.size - 2).reshape(rows)
    else:
        start, first, width, last = 0, grid[0], grid[1] - grid[0], len(grid) - 2
    j = np.minimum(np.maximum(((c - first) / width).astype(np.int64), 0), last) + start
    return j, (c - np.take(grid, j)) / width, width


def evaluate_log_denominator(table: LogDenominatorTable | LogDenominatorTables, c: np.ndarray) -> np.ndarray:
    """LSE(c) from the table, for c of any shape within its range (tables: rows on c's first axis)."""
    j, t, width = _hermite_piece(table, c)
    return cubic_hermite(t, width, *_node_values(table, j))


def evaluate_log_denominator_slope(table: LogDenominatorTable | LogDenominatorTables, c: np.ndarray) -> np.ndarray:
    """d LSE / dc of the same cubic Hermite interpolant (the softmax mean of Sbar, to its accuracy)."""
    j, t, width = _hermite_piece(table, c)
    return cubic_hermite_slope(t, width, *_node_values(table, j))


def _node_values(table: LogDenominatorTable | LogDenominatorTables, j: np.ndarray):
    """LSE and LSE' at both ends of each interval j."""
    k = j + 1
    return np.take(table.value, j), np.take(table.slope, j), np.take(table.value, k), np.take(table.slope, k)


# -- the PyTensor table: a lattice in c from the row error ---------------------------------------------
MAX_TABLE_NODES = 4096


def table_spacing(row_error, s_range):
    """PyTensor: the node spacing dc, a power of two with (dc R)^4 / 3072 <= row_error. A power of
    two puts the nodes on a lattice that stays fixed while R moves within an octave."""
    import pytensor.tensor as pt

    widest = (CUBIC_ERROR_DENOMINATOR * row_error) ** 0.25 / pt.maximum(s_range, 1e-12)
    return pt.exp2(pt.floor(pt.log2(widest)))


def table_lattice(row_error: float, s_range, c_lo, c_hi):
    """PyTensor: the table's lattice (dc, index of its first point, number of points) for rows with
    c in [c_lo, c_hi]. dc is table_spacing's, the widest within row_error, while that spans the
    rows in MAX_TABLE_NODES points; beyond, it doubles until they do (far from the posterior: the
    first steps of warm-up, a diverging trajectory), and each row is then within the same bound at
    the coarser dc, 16 times row_error per doubling. Memory and time stay at MAX_TABLE_NODES x
    counties wherever the sampler goes, where a direct sum for the rows beyond a fixed window cost
    firms x nodes x counties (24 GB at 30 times the paper's firms)."""
    import pytensor.tensor as pt

    fine = table_spacing(row_error, s_range)
    intervals = pt.maximum(c_hi - c_lo, 0.0) / fine
    doublings = pt.maximum(0.0, pt.ceil(pt.log2(pt.maximum(intervals, 1.0) / (MAX_TABLE_NODES - 3))))
    dc = fine * pt.exp2(doublings)
    first = pt.floor(c_lo / dc)
    size = pt.clip(pt.ceil(c_hi / dc) - first + 1, 2, MAX_TABLE_NODES).astype("int64")
    return dc, first, size


def tabulated_log_denominator(county_effect, sbar, c, row_error: float):
    """PyTensor: LSE(c_r) = log sum_m exp(a_m + c_r Sbar_m) for many rows r (firms x quadrature
    nodes), within row_error of the direct sum, in O(nodes x counties + rows).

    LSE and its derivative (the softmax mean of Sbar) are summed directly at the lattice points
    k dc that span the rows' c, and each row reads the cubic Hermite interpolant between its two
    neighbours. The lattice (``table_lattice``) is piecewise constant in the parameters, so the
    gradient that automatic differentiation gives is the exact gradient of the interpolant. Where
    the rows' c span more than MAX_TABLE_NODES points at that spacing, the lattice coarsens (far
    from the posterior; ``table_lattice`` says how far the bound moves)."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

    s_range = disconnected_grad(pt.max(sbar) - pt.min(sbar))
    c_lo, c_hi = disconnected_grad(pt.min(c)), disconnected_grad(pt.max(c))
    dc, first, size = (disconnected_grad(v) for v in table_lattice(row_error, s_range, c_lo, c_hi))
    value, slope = log_denominator_with_slope(county_effect, sbar, (first + pt.arange(size)) * dc, pt)
    x = c / dc - first
    j = pt.clip(pt.floor(x), 0, size - 2).astype("int64")
    lse = cubic_hermite(x - j, dc, value[j], slope[j], value[j + 1], slope[j + 1])
    # floating-point rounding at the lattice's far end only: the direct sum for those rows
    beyond = pt.nonzero(pt.gt(x, size - 1))[0]
    return pt.set_subtensor(lse[beyond], exact_log_denominator(county_effect, sbar, c[beyond], pt))
