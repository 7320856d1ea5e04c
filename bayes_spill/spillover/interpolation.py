"""Certified approximations for the two sums over distances that make the likelihood cost more
than the data.

Summed directly, the likelihood costs counties x sources x years for the production field S_lt(h)
and counties x sources for the location field Sbar_l(h). Each is replaced by an approximation whose
error is bounded by a proof, for every half-life, and whose gradient is the exact gradient of the
approximation (automatic differentiation through it):

1. ``HalflifeTable``: Sbar_l(h) depends on the parameters only through h. It is tabulated once on a
   grid in u = ln h with its first two u-derivatives (analytic) and read by quintic Hermite
   interpolation; one more quintic piece in w = 1/h reaches h = infinity, and below h_min the field
   is constant to within a bound computed from the data. Quintic Hermite errs by at most
   H^6 max|f^(6)| / 46080 on an interval of width H, and the u-derivatives of exp(-ln2 d e^-u) are
   bounded by C_6 (from the recursion of their polynomials): at most du^6 C_6 sum_m calR_m / 46080
   per county, built at 1e-11 $ bil.

2. ``FieldTable``: S_lt(h) for every (county, year) the panel uses, as Chebyshev series in u on
   pieces of width 2, plus a piece in w = 1/h. In the strip |Im u| < pi/2 each weight
   exp(-ln2 d e^-u) has modulus <= 1, which bounds the series' error by the Bernstein-ellipse
   theorem; built at 1e-12 $ bil.

The third sum, the logit's denominator LSE(c_i) = log sum_l exp(a_l + c_i Sbar_l) over firms x
counties, is the model's: bayes_spill.model.denominator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from bayes_spill.spillover.kernel import LN2, decay_weights

QUINTIC_ERROR_DENOMINATOR = 46080.0  # 6! * 2^6: max |(x - x0)^3 (x - x1)^3| = (H/2)^6
TABLE_ERROR_TARGET = 1e-11  # $ bil, per county, over the whole half-life axis
H_MIN_KM = 0.01
H_MAX_KM = 1.0e5


def quintic_hermite(t, width, f0, d0, s0, f1, d1, s1):
    """The quintic matching value, first and second derivative at both ends of an interval of the
    given width, at relative position t in [0, 1]. Works on numpy arrays and PyTensor tensors.

    Written in Horner form: few uses of each input keep the gradient graph small (PyTensor sums
    one gradient term per use)."""
    jump = f1 - f0
    slope0, slope1 = width * d0, width * d1
    curve0, curve1 = width * width * s0, width * width * s1
    c3 = 10.0 * jump - 6.0 * slope0 - 4.0 * slope1 - 1.5 * curve0 + 0.5 * curve1
    c4 = -15.0 * jump + 8.0 * slope0 + 7.0 * slope1 + 1.5 * curve0 - curve1
    c5 = 6.0 * jump - 3.0 * slope0 - 3.0 * slope1 - 0.5 * curve0 + 0.5 * curve1
    return f0 + t * (slope0 + t * (0.5 * curve0 + t * (c3 + t * (c4 + t * c5))))


def gumbel_derivative_polynomial(order: int) -> np.polynomial.Polynomial:
    """p_n with d^n/du^n exp(-e^{-u}) = e^{-z} p_n(z), z = e^{-u}: p_0 = 1, p_{n+1} = z (p_n - p_n')."""
    p = np.polynomial.Polynomial([1.0])
    z = np.polynomial.Polynomial([0.0, 1.0])
    for _ in range(order):
        p = z * (p - p.deriv())
    return p


def gumbel_derivative_bound(order: int = 6) -> float:
    """max over u of |d^order/du^order exp(-e^{-u})|, on a fine grid of z with a 1% margin (the
    function e^{-z} p(z) is smooth and vanishes at z = 0 and z = infinity)."""
    z = np.linspace(0.0, 60.0, 600_001)
    return 1.01 * float(np.max(np.abs(np.exp(-z) * gumbel_derivative_polynomial(order)(z))))


C6_GUMBEL = gumbel_derivative_bound(6)


# ---------------------------------------------------------------------------------------------
# Sbar_l(h) tabulated in ln h
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HalflifeTable:
    """Sbar_l and its first two derivatives in u = ln h on an equally spaced grid, plus the piece in
    w = 1/h that joins h_max to h = infinity. ``error_bound`` ($ bil) holds for every h > 0."""

    u0: float
    du: float
    values: np.ndarray  # (K, L)
    d1: np.ndarray  # (K, L) dSbar/du
    d2: np.ndarray  # (K, L) d2Sbar/du2
    w_max: float  # 1 / h_max
    far_values: np.ndarray  # (2, L): at w = 0 (h = inf) and at w = w_max
    far_d1: np.ndarray  # (2, L) dSbar/dw
    far_d2: np.ndarray  # (2, L)
    error_bound: float

    @property
    def nodes(self) -> int:
        return len(self.values)


def _field_and_w_derivatives(distance: np.ndarray, pool: np.ndarray, w: float):
    k = LN2 * distance  # d/dw of -ln2 d w
    wp = np.exp(-k * w) * pool
    return wp.sum(axis=1), -(wp * k).sum(axis=1), (wp * k * k).sum(axis=1)


def build_halflife_table(
    distance_km: np.ndarray,
    pool_bil: np.ndarray,
    error_target: float = TABLE_ERROR_TARGET,
    h_min_km: float = H_MIN_KM,
    h_max_km: float = H_MAX_KM,
) -> HalflifeTable:
    """Tabulate Sbar(h) = exp(-ln2 rho / h) @ pool for the receivers (rows of distance_km)."""
    from bayes_spill.spillover import pair_sums  # compiled on first use

    distance = np.ascontiguousarray(distance_km, dtype=float)
    pool = np.asarray(pool_bil, dtype=float)
    symmetric = pair_sums.is_symmetric(distance)
    total = float(np.abs(pool).sum())
    u0, u1 = math.log(h_min_km), math.log(h_max_km)
    du_max = (error_target * QUINTIC_ERROR_DENOMINATOR / (C6_GUMBEL * max(total, 1e-300))) ** (1.0 / 6.0)
    intervals = max(1, math.ceil((u1 - u0) / du_max))
    du = (u1 - u0) / intervals
    columns = [
        pair_sums.field_and_u_derivatives(distance, pool, math.exp(u0 + k * du), symmetric)
        for k in range(intervals + 1)
    ]
    values, d1, d2 = (np.array([c[j] for c in columns]) for j in range(3))

    w_max = 1.0 / h_max_km
    far = [_field_and_w_derivatives(distance, pool, w) for w in (0.0, w_max)]
    far_values, far_d1, far_d2 = (np.array([c[j] for c in far]) for j in range(3))
    # sixth w-derivative: sum_m pool_m (ln2 d)^6 exp(-ln2 d w) <= sum_m pool_m (ln2 d)^6
    far_bound = w_max**6 * float(np.max(np.abs(pool) @ (LN2 * distance.T) ** 6)) / QUINTIC_ERROR_DENOMINATOR
    # below h_min, Sbar(h) moves by at most what the other counties still contribute at h_min
    other = distance > 0
    below_bound = float(np.max(np.where(other, decay_weights(distance, h_min_km), 0.0) @ np.abs(pool)))
    table_bound = du**6 * C6_GUMBEL * total / QUINTIC_ERROR_DENOMINATOR
    return HalflifeTable(
        u0=u0,
        du=du,
        values=values,
        d1=d1,
        d2=d2,
        w_max=w_max,
        far_values=far_values,
        far_d1=far_d1,
        far_d2=far_d2,
        error_bound=max(table_bound, far_bound, below_bound),
    )


def evaluate_table(table: HalflifeTable, halflife_km, backend=np):
    """Sbar_l(h) from the table (numpy or PyTensor); C2-continuous in h, exact gradient of the
    interpolant. Below h_min the first node is used (the bound covers it). numpy also takes an
    array of half-lives: one row of Sbar_l per half-life (the steps after sampling, per draw)."""
    xp = backend
    const = np.asarray if backend is np else backend.as_tensor_variable
    # numpy: each half-life's scalars against the counties' axis (a 0-d h broadcasts as before)
    per_county = (lambda a: np.asarray(a)[..., None]) if backend is np else (lambda a: a)
    values, d1, d2 = const(table.values), const(table.d1), const(table.d2)
    last = table.nodes - 1
    u = xp.clip(xp.log(halflife_km), table.u0, table.u0 + last * table.du)
    x = (u - table.u0) / table.du
    j = xp.clip(xp.floor(x), 0, last - 1).astype("int64")
    t = per_county(x - j)
    near = quintic_hermite(t, table.du, values[j], d1[j], d2[j], values[j + 1], d1[j + 1], d2[j + 1])
    s = per_county(xp.clip(1.0 / halflife_km, 0.0, table.w_max) / table.w_max)
    fv, f1, f2 = table.far_values, table.far_d1, table.far_d2
    far = quintic_hermite(s, table.w_max, fv[0], f1[0], f2[0], fv[1], f1[1], f2[1])
    return xp.where(per_county(halflife_km >= 1.0 / table.w_max), far, near)


# ---------------------------------------------------------------------------------------------
# The production field S_lt(h), piecewise Chebyshev in ln h
# ---------------------------------------------------------------------------------------------

FIELD_ERROR_TARGET = 1e-12  # $ bil, per (county, year) entry, for every h > 0
FIELD_PIECE_HALF_WIDTH = 1.0  # in u = ln h
STRIP_FRACTION = 0.95  # of the strip |Im u| < pi/2 where |exp(-ln2 d e^-u)| <= 1
FAR_RHO = 8.0  # Bernstein ellipse of the piece in w = 1/h beyond h_max


@dataclass(frozen=True, eq=False)
class FieldTable:
    """S_lt(h) for the (county, year) entries the production equation reads: Chebyshev series in
    u = ln h on equal pieces of [ln h_min, ln h_max], one more in w = 1/h from h_max to infinity,
    and below h_min the value at h_min. ``error_bound`` ($ bil) holds for every h > 0."""

    u_edges: np.ndarray  # (P + 1,)
    coefficients: np.ndarray  # (P, E, n + 1)
    far_coefficients: np.ndarray  # (E, m + 1), in x = 2 w / w_max - 1
    w_max: float
    receiver: np.ndarray  # (E,) row of the production distance matrix
    year: np.ndarray  # (E,)
    error_bound: float

    @property
    def half_width(self) -> float:
        return 0.5 * float(self.u_edges[1] - self.u_edges[0])


def chebyshev_error_bound(bound: float, rho: float, degree: int) -> float:
    """Interpolation at n + 1 Chebyshev points of f analytic with |f| <= bound inside the
    Bernstein ellipse E_rho: (1 + Lambda_n) 2 bound rho^-n / (rho - 1), the best approximation's
    bound (Trefethen, ATAP Thm 8.2) times one plus the Lebesgue constant, Lambda_n <= 1 + (2/pi)
    ln(n + 1)."""
    lebesgue = 1.0 + 2.0 / math.pi * math.log(degree + 1.0)
    return (1.0 + lebesgue) * 2.0 * bound * rho ** (-degree) / (rho - 1.0)


def strip_rho(half_width: float) -> float:
    """The largest ellipse around an interval of this half-width inside |Im u| < 0.95 pi/2. There
    Re e^-u > 0, so every |exp(-ln2 d e^-u)| <= 1 and |S_lt| <= sum_m |calR_mt|."""
    semi_minor = STRIP_FRACTION * math.pi / 2.0 / half_width
    return semi_minor + math.sqrt(1.0 + semi_minor**2)


def _degree(bound: float, rho: float, target: float) -> int:
    degree = 1
    while chebyshev_error_bound(bound, rho, degree) > target:
        degree += 1
    return degree


def _chebyshev_fit(values_at, degree: int) -> np.ndarray:
    """Coefficients (E, n + 1) of the interpolant at the n + 1 Chebyshev points x_j of
    values_at(x) (E,): c_k = 2/(n+1) sum_j f(x_j) T_k(x_j), halved for k = 0."""
    angles = math.pi * (np.arange(degree + 1) + 0.5) / (degree + 1)
    to_coefficients = 2.0 / (degree + 1) * np.cos(np.outer(np.arange(degree + 1), angles))
    to_coefficients[0] *= 0.5
    values = np.array([values_at(x) for x in np.cos(angles)])
    return (to_coefficients @ values).T


def build_field_table(
    distance_km: np.ndarray,
    pool_bil: np.ndarray,
    receiver: np.ndarray,
    year: np.ndarray,
    error_target: float = FIELD_ERROR_TARGET,
    h_min_km: float = H_MIN_KM,
    h_max_km: float = H_MAX_KM,
) -> FieldTable:
    """Tabulate S_lt(h) = (exp(-ln2 rho / h) @ pool)[receiver, year] for the given entries."""
    from bayes_spill.spillover import pair_sums  # compiled on first use

    distance = np.ascontiguousarray(distance_km, dtype=float)
    pool = np.asarray(pool_bil, dtype=float)
    receiver, year = np.asarray(receiver), np.asarray(year)
    symmetric = pair_sums.is_symmetric(distance)

    def field(h: float) -> np.ndarray:
        return (pair_sums.decay_weights(distance, h, symmetric) @ pool)[receiver, year]

    bound = max(float(np.abs(pool).sum(axis=0).max()), 1e-300)
    u0, u1 = math.log(h_min_km), math.log(h_max_km)
    pieces = max(1, math.ceil((u1 - u0) / (2.0 * FIELD_PIECE_HALF_WIDTH)))
    edges = np.linspace(u0, u1, pieces + 1)
    half = 0.5 * (u1 - u0) / pieces
    degree = _degree(bound, strip_rho(half), error_target)
    # One BLAS thread for the few hundred products of the fits: on a busy machine a second
    # thread's spin-waiting cost several times what it computed (docs/performance.md, "Scale").
    with threadpool_limits(1, user_api="blas"):
        coefficients = np.stack(
            [
                _chebyshev_fit(lambda x, c=0.5 * (edges[p] + edges[p + 1]): field(math.exp(c + half * x)), degree)
                for p in range(pieces)
            ]
        )
        # beyond h_max, w = 1/h in [0, w_max]; in E_rho, Re w >= -(semi-major - w_max/2), where
        # |exp(-ln2 d w)| <= exp(ln2 d_max (semi-major - w_max/2))
        w_max = 1.0 / h_max_km
        overhang = 0.5 * w_max * (0.5 * (FAR_RHO + 1.0 / FAR_RHO) - 1.0)
        far_bound = bound * math.exp(LN2 * float(distance.max()) * overhang)
        far_degree = _degree(far_bound, FAR_RHO, error_target)
        far = _chebyshev_fit(lambda x: field(1.0 / max(0.5 * w_max * (x + 1.0), 1e-300)), far_degree)
    # below h_min, S_lt moves by at most what the other counties still contribute at h_min
    other = np.where(distance > 0, decay_weights(distance, h_min_km), 0.0) @ np.abs(pool)
    error_bound = max(
        chebyshev_error_bound(bound, strip_rho(half), degree),
        chebyshev_error_bound(far_bound, FAR_RHO, far_degree),
        float(other[receiver, year].max()),
    )
    return FieldTable(edges, coefficients, far, w_max, receiver, year, error_bound)


def chebyshev_series(coefficients, x, terms: int, backend=np):
    """sum_k coefficients[..., k] T_k(x), k < terms, for a scalar x in [-1, 1] (numpy or PyTensor).

    T_k(x) = cos(k arccos x), one vectorised operation (an unrolled recurrence made a graph that
    compiled slowly), with x kept 1e-15 inside the ends where arccos' derivative is infinite: that
    moves T_k by at most k^2 1e-15."""
    xp = backend
    theta = xp.arccos(xp.clip(x, -1.0 + 1e-15, 1.0 - 1e-15))
    return xp.dot(coefficients, xp.cos(np.arange(terms, dtype=float) * theta))


def evaluate_field_table(table: FieldTable, halflife_km, backend=np):
    """S_lt(h) at the table's entries (numpy or PyTensor), for any h > 0."""
    xp = backend
    const = np.asarray if backend is np else backend.as_tensor_variable
    pieces, half, u0 = table.coefficients.shape[0], table.half_width, float(table.u_edges[0])
    u = xp.clip(xp.log(halflife_km), u0, float(table.u_edges[-1]))
    p = xp.clip(xp.floor((u - u0) / (2.0 * half)), 0, pieces - 1).astype("int64")
    x = xp.clip((u - u0 - (2.0 * p + 1.0) * half) / half, -1.0, 1.0)
    near = chebyshev_series(const(table.coefficients)[p], x, table.coefficients.shape[-1], backend)
    w = xp.clip(1.0 / halflife_km, 0.0, table.w_max)
    far = chebyshev_series(
        const(table.far_coefficients), 2.0 * w / table.w_max - 1.0, table.far_coefficients.shape[-1], backend
    )
    return xp.where(halflife_km * table.w_max > 1.0, far, near)
