"""The priors of a configuration as PyMC distributions: the one parametrisation of the package.

A configuration names a prior by a PyMC family and its PyMC parameters (``config.PRIOR_FAMILIES``).
The model samples from exactly these distributions; a fit's ``prior`` group is drawn from the
fitted model itself (``prior_group``) and its ``log_prior`` group evaluates them at the posterior
draws (``log_prior``); the calibration studies draw true parameters from a model of the same
variables (``draw``); the identification check and the figures read their variance, density and
quantiles from them (``PriorDistribution``). Nothing else restates how a family's parameters map
to a distribution, so these cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from bayes_spill.config import POSITIVE_FAMILIES, Prior


def distribution(prior: Prior):
    """The prior as an unnamed PyMC distribution (``pm.<family>.dist``), e.g. for ``pm.logp``."""
    return getattr(pm, prior.family).dist(**prior.kwargs())


def variable(name: str, prior: Prior, **kwargs):
    """The prior as a named random variable of the PyMC model in context (kwargs: dims, shape)."""
    return getattr(pm, prior.family)(name, **prior.kwargs(), **kwargs)


def model_of(priors: Iterable[tuple[str, Prior]]) -> pm.Model:
    """A PyMC model of independent priors, each declared by ``variable`` as the joint model
    declares it: what the calibration studies draw true parameters from before any panel exists."""
    with pm.Model() as model:
        for name, prior in priors:
            variable(name, prior)
    return model


def draw(priors: Iterable[tuple[str, Prior]], rng: np.random.Generator, draws: int = 1) -> dict:
    """Joint draws of independent priors from their PyMC model (``model_of``), by ``pm.draw``.

    Parameters
    ----------
    priors : iterable of (name, Prior)
        The priors to draw from.
    rng : numpy.random.Generator
        Seeds the draws (and advances: the next call with the same rng draws anew).
    draws : int
        How many draws of each.

    Returns
    -------
    dict
        name -> the drawn value (a float), or an array of ``draws`` values when draws > 1.
    """
    pairs = list(priors)
    if not pairs:
        return {}
    model = model_of(pairs)
    values = pm.draw([model[name] for name, _ in pairs], draws=draws, random_seed=rng)
    return {name: float(value) if draws == 1 else np.asarray(value) for (name, _), value in zip(pairs, values)}


def prior_group(model: pm.Model, names: Iterable[str], draws: int, rng: np.random.Generator):
    """Draws of the model's own variables from its prior (``pm.sample_prior_predictive``): the
    ``prior`` group of a fit (one chain).

    Parameters
    ----------
    model : pymc.Model
        The fitted model.
    names : iterable of str
        Its variables to draw; those it lacks are left out. They must not depend on a ``pm.Flat``
        (the whitened production coefficients carry their prior as a potential, which prior
        sampling cannot draw from).
    draws : int
        Draws of each.
    rng : numpy.random.Generator
        The seed stream of the prior draws (the sampler's own stream is left untouched).

    Returns
    -------
    xarray.Dataset
        The ``prior`` group: (chain, draw, ...) per variable.
    """
    import logging
    import warnings

    present = [n for n in names if n in model.named_vars]
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)  # its "Sampling: [...]" line in the middle of a fit's output
    try:
        with warnings.catch_warnings():
            # the model's potentials are its likelihood and the production coefficients' prior:
            # none of the variables drawn here depends on them
            warnings.filterwarnings("ignore", message="The effect of Potentials", category=UserWarning)
            tree = pm.sample_prior_predictive(draws=draws, model=model, var_names=present, random_seed=rng)
    finally:
        logger.setLevel(level)
    return tree["prior"].to_dataset()


def log_prior(priors: dict, posterior, names: Iterable[str]):
    """The log prior density of each named parameter at every posterior draw (by ``pm.logp`` of
    its PyMC distribution, on the parameter's own scale): the ``log_prior`` group that ArviZ's
    power-scaling sensitivity (``arviz_stats.psense``) scales.

    Parameters
    ----------
    priors : dict
        name -> Prior of the configuration.
    posterior : xarray.Dataset
        The posterior group.
    names : iterable of str
        The parameters with a prior of their own (top-level: not alpha_i or the county effects,
        whose distributions are the hierarchical part of the model); those missing from the
        posterior are left out. ``year_effect`` sums the prior of the free years (the first is 0).

    Returns
    -------
    xarray.Dataset
        (chain, draw[, ...]) per parameter.
    """
    import xarray as xr

    dims, graphs = {}, {}
    for name in names:
        if name not in posterior or name not in priors:
            continue
        values = posterior[name]
        if name == "year_effect":
            free = values.isel({values.dims[-1]: slice(1, None)})
            dims[name], graphs[name] = ("chain", "draw"), pm.logp(distribution(priors[name]), free.values).sum(axis=-1)
            continue
        dims[name], graphs[name] = values.dims, pm.logp(distribution(priors[name]), values.values)
    computed = pytensor.function([], list(graphs.values()))() if graphs else []  # one compile for all
    out = {name: (dims[name], value) for name, value in zip(graphs, computed)}
    coords = {d: posterior[d].values for d in posterior.dims if d in {d for v in out.values() for d in v[0]}}
    return xr.Dataset(out, coords=coords)


@dataclass(frozen=True)
class PriorDistribution:
    """Density, quantiles and variance of a prior, computed from its PyMC distribution: the density
    by ``pm.logp``, quantiles by ``pm.icdf``, moments by tanh-sinh quadrature of that density."""

    prior: Prior

    @cached_property
    def _log_density(self):
        x = pt.dvector("x")
        return pytensor.function([x], pm.logp(distribution(self.prior), x), mode="FAST_COMPILE")

    def pdf(self, x) -> np.ndarray:
        """The density at x (array)."""
        x = np.asarray(x, dtype=float)
        return np.exp(self._log_density(x.ravel())).reshape(x.shape)

    @cached_property
    def _quantile(self):
        q = pt.dvector("q")
        return pytensor.function([q], pm.icdf(distribution(self.prior), q), mode="FAST_COMPILE")

    def ppf(self, q):
        """The quantile function at q in (0, 1) (a float for a float)."""
        q = np.asarray(q, dtype=float)
        out = self._quantile(q.ravel()).reshape(q.shape)
        return float(out) if out.ndim == 0 else out

    @cached_property
    def _median(self) -> float:
        return float(self.ppf(0.5))

    def _integral(self, g) -> float:
        """The integral of g times the density over the support, by tanh-sinh quadrature (scipy's,
        which evaluates g and the density on arrays of nodes: adaptive quadrature one node per
        call took seconds per prior). g takes and returns arrays."""
        from scipy import integrate

        lower = 0.0 if self.prior.family in POSITIVE_FAMILIES else -np.inf
        total = 0.0
        # split at the median so the quadrature sees the bulk of the mass on both pieces
        for a, b in ((lower, self._median), (self._median, np.inf)):
            result = integrate.tanhsinh(lambda x: g(x) * self.pdf(x), a, b, rtol=1e-12, atol=0.0)
            if not np.all(result.success):
                raise FloatingPointError(f"the quadrature of the {self.prior.family} prior did not converge")
            total += float(result.integral)
        return total

    def _expectation(self, g) -> float:
        """E g(X): normalised by the density's own integral, so that a rounding in its constant
        (PyMC's log-density need only be right up to one) cancels."""
        return self._integral(g) / self._integral(np.ones_like)

    def var(self, log: bool = False) -> float:
        """The variance of the prior, or of its log with ``log=True`` (positive families only); inf
        where it has none (a StudentT with nu <= 2)."""
        p = self.prior.kwargs()
        if log and self.prior.family == "LogNormal":
            return float(p["sigma"] ** 2)  # log X is Normal(mu, sigma) exactly
        if not log and self.prior.family == "StudentT" and p["nu"] <= 2.0:
            return math.inf
        if log and self.prior.family not in POSITIVE_FAMILIES:
            raise ValueError(f"a {self.prior.family} prior takes values <= 0: its log has no variance")
        g = np.log if log else (lambda x: x)
        mean = self._expectation(g)
        return self._expectation(lambda x: (g(x) - mean) ** 2)
