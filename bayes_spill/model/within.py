"""Sums within each firm and the within-firm transformation (the firm effect u_i removed), written
once for the likelihood (PyTensor), the alpha_i-integrated model, the two-step estimator, Table 4
and the predictive checks (numpy).

The firm-years are indexed by ``obs_firm`` (the firm of each row); rows need not be sorted. Every
sum accumulates the rows of a firm in row order, so a (n_obs, p) array gives column by column
exactly what its columns give one at a time.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def segment_sum(values, segment: np.ndarray, n_segments: int, backend: ModuleType = np, axis: int = 0):
    """Sum of values within each segment (firm).

    Parameters
    ----------
    values : array or tensor
        One entry per row along ``axis``; numpy takes any number of other axes, PyTensor a vector.
    segment : ndarray of int
        The segment (firm) of each row, in 0..n_segments - 1.
    n_segments : int
        The number of segments.
    backend : module
        numpy or pytensor.tensor.
    axis : int
        The axis of the rows (numpy only).

    Returns
    -------
    array or tensor
        The sums, with n_segments entries along ``axis``.
    """
    if backend is not np:
        return backend.zeros(n_segments)[segment].inc(values)
    values = np.asarray(values)
    if axis != 0:
        return np.moveaxis(segment_sum(np.moveaxis(values, axis, 0), segment, n_segments), 0, axis)
    if values.ndim == 1:
        return np.bincount(segment, weights=values, minlength=n_segments)
    # a sparse indicator (segments x rows) times the rows: the sums np.add.at gives, bit for bit
    # (each accumulates its rows in order), at a fraction of its cost
    from scipy.sparse import csr_matrix

    rows = len(segment)
    indicator = csr_matrix((np.ones(rows), (np.asarray(segment), np.arange(rows))), shape=(n_segments, rows))
    flat = values.reshape(rows, -1)
    return np.asarray(indicator @ flat).reshape(n_segments, *values.shape[1:])


def within_firm(values, obs_firm: np.ndarray, years_per_firm: np.ndarray, backend: ModuleType = np, axis: int = 0):
    """values less their firm means: the within-firm transformation that removes u_i.

    Parameters
    ----------
    values : array or tensor
        One entry per firm-year along ``axis`` (numpy: any other axes; PyTensor: a vector).
    obs_firm : ndarray of int
        The firm of each firm-year.
    years_per_firm : ndarray
        T_i, the number of firm-years of each firm.
    backend : module
        numpy or pytensor.tensor.
    axis : int
        The axis of the firm-years (numpy only).

    Returns
    -------
    array or tensor
        The same shape as values.
    """
    if backend is np and axis != 0:
        return np.moveaxis(within_firm(np.moveaxis(np.asarray(values), axis, 0), obs_firm, years_per_firm), 0, axis)
    sums = segment_sum(values, obs_firm, len(years_per_firm), backend)
    means = sums / years_per_firm.reshape(-1, *([1] * (values.ndim - 1)))
    return values - means[obs_firm]
