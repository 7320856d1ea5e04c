"""Compiled loops over (receiver, source) county pairs, for building the tables of interpolation.py.

A table evaluates the decay weights exp(-ln2 rho / h) at several hundred half-lives, each time for
every pair of counties: receivers x sources exponentials per half-life, which made the tables the
largest part of a model's build, growing with the square of the occupied counties
(docs/performance.md, "Scale"). Here each weight is computed by ``kernel.decay_weights``' formula
(exactly 0 where the exponent is at or below ``kernel.MIN_EXPONENT``) in one pass without
temporaries, and once per unordered pair where receivers and sources are the same counties in the
same order (a symmetric distance matrix: the default, occupied-county choice set).

Numba compiles the loops on first use and caches them on disk (``cache=True``); this module is
imported only when a table is built.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from bayes_spill.paper import LN2
from bayes_spill.spillover.kernel import MIN_EXPONENT


def is_symmetric(distance: np.ndarray) -> bool:
    """Whether a distance matrix is square and equal to its transpose (bit for bit)."""
    return distance.ndim == 2 and distance.shape[0] == distance.shape[1] and np.array_equal(distance, distance.T)


@numba.njit(cache=True)
def _weights_into(distance, rate, symmetric, out):  # pragma: no cover - compiled
    rows, cols = distance.shape
    for i in range(rows):
        start = i if symmetric else 0
        for j in range(start, cols):
            exponent = -rate * distance[i, j]
            w = math.exp(exponent) if exponent > MIN_EXPONENT else 0.0
            out[i, j] = w
            if symmetric:
                out[j, i] = w
    return out


def decay_weights(distance: np.ndarray, halflife_km: float, symmetric: bool) -> np.ndarray:
    """exp(-lambda rho) for every entry, equal bit for bit to ``kernel.decay_weights(distance,
    halflife_km)`` (numpy).

    Parameters
    ----------
    distance : ndarray
        (L, M) distances in km, C-contiguous float64.
    halflife_km : float
        The half-life h; lambda = ln 2 / h.
    symmetric : bool
        ``is_symmetric(distance)``: then each unordered pair's weight is computed once.

    Returns
    -------
    ndarray
        (L, M) weights.
    """
    distance = np.ascontiguousarray(distance, dtype=float)
    return _weights_into(distance, LN2 / halflife_km, symmetric, np.empty_like(distance))


@numba.njit(cache=True)
def _u_sums(distance, pool, halflife_km, symmetric):  # pragma: no cover - compiled
    rows, cols = distance.shape
    rate = LN2 / halflife_km
    s0, s1, s2 = np.zeros(rows), np.zeros(rows), np.zeros(rows)
    for i in range(rows):
        start = i if symmetric else 0
        for j in range(start, cols):
            exponent = -rate * distance[i, j]
            if exponent <= MIN_EXPONENT:
                continue
            w = math.exp(exponent)
            z = LN2 * distance[i, j] / halflife_km
            zz = z * z - z
            wp = w * pool[j]
            s0[i] += wp
            s1[i] += wp * z
            s2[i] += wp * zz
            if symmetric and j != i:
                wp = w * pool[i]
                s0[j] += wp
                s1[j] += wp * z
                s2[j] += wp * zz
    return s0, s1, s2


def field_and_u_derivatives(distance: np.ndarray, pool: np.ndarray, halflife_km: float, symmetric: bool):
    """Sbar_l(h) = sum_m w_lm pool_m and its first two derivatives in u = ln h, with w_lm =
    exp(-z_lm), z_lm = ln2 rho_lm / h: sum_m w pool z and sum_m w pool (z^2 - z).

    Parameters
    ----------
    distance : ndarray
        (L, M) distances in km.
    pool : ndarray
        (M,) pools in $ bil.
    halflife_km : float
        The half-life h.
    symmetric : bool
        ``is_symmetric(distance)``: then each unordered pair's weight is computed once.

    Returns
    -------
    tuple of ndarray
        Three (L,) arrays: the field and its first and second u-derivatives. Equal to the numpy
        sums up to the order of summation (a few units in the last place).
    """
    distance = np.ascontiguousarray(distance, dtype=float)
    return _u_sums(distance, np.ascontiguousarray(pool, dtype=float), float(halflife_km), symmetric)
