"""Posterior draws of a fit's parameters as numpy arrays, flattened over chains: what the checks
and the policy experiments compute with, thinned evenly to as many draws as they need.

One class, ``PosteriorDraws``, for every after-fit consumer: the predictive checks thin with the
same draw positions in every chain (``thin_per_chain``: the replicated data keep a chain x draw
grid), the counterfactuals evenly over the stacked draws (``thin``); a simulation's true
parameters are one "draw" of the same class (``from_truth``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import xarray as xr

from bayes_spill.errors import BayesSpillError, PosteriorError
from bayes_spill.model.likelihood import FIRM

BETA_NAMES = ("beta_k", "beta_l", "beta_r", "beta_zero_rd")


def thin_indices(total: int, keep: int | None) -> np.ndarray:
    """Evenly spaced indices of ``keep`` of ``total`` draws (all when keep is None or larger).

    Parameters
    ----------
    total : int
        Number of draws to choose from.
    keep : int or None
        Number of draws wanted; None keeps all.

    Returns
    -------
    numpy.ndarray
        Sorted, distinct integer indices.
    """
    if keep is None or keep >= total:
        return np.arange(total)
    if keep < 1:
        raise BayesSpillError(f"the number of draws must be at least 1, got {keep}")
    return np.unique(np.linspace(0, total - 1, keep).round().astype(int))


def per_chain_positions(draws_per_chain: int, n_chains: int, keep: int) -> np.ndarray:
    """Positions within a chain of about ``keep`` draws in all: the same evenly spaced positions
    in every chain (every position when there are fewer).

    Parameters
    ----------
    draws_per_chain : int
        Draws in each chain.
    n_chains : int
        Number of chains.
    keep : int
        Draws wanted over all chains.

    Returns
    -------
    numpy.ndarray
        Sorted, distinct positions in ``range(draws_per_chain)``.
    """
    per_chain = max(1, min(draws_per_chain, int(np.ceil(keep / n_chains))))
    return np.unique(np.linspace(0, draws_per_chain - 1, per_chain).round().astype(int))


@dataclass(frozen=True, eq=False)
class PosteriorDraws:
    """Parameter draws on a leading axis of D draws (chains stacked, chain-major).

    Attributes
    ----------
    halflife_km : numpy.ndarray
        (D,) spillover half-life.
    alpha : numpy.ndarray
        (D, N) absorptive capacity per firm in the panel's firm order (a homogeneous alpha is
        repeated for every firm).
    beta : numpy.ndarray or None
        (D, 4) production coefficients in ``BETA_NAMES`` order.
    year_effect : numpy.ndarray or None
        (D, Y) year effects.
    sigma_w : numpy.ndarray or None
        (D,) production noise.
    mu_alpha, sigma_alpha : numpy.ndarray or None
        (D,) population distribution of alpha_i.
    gamma : numpy.ndarray or None
        (D,) sorting; zeros for a location block without sorting, None without a location block.
    county_effect : numpy.ndarray or None
        (D, L) county effects over the choice set; None without a location block.
    chain, draw : numpy.ndarray or None
        (D,) the posterior's chain and draw labels of each draw (None for the truth).
    label : str
        "posterior", or "truth" for a simulation's true parameters.
    """

    halflife_km: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray | None = None
    year_effect: np.ndarray | None = None
    sigma_w: np.ndarray | None = None
    mu_alpha: np.ndarray | None = None
    sigma_alpha: np.ndarray | None = None
    gamma: np.ndarray | None = None
    county_effect: np.ndarray | None = None
    chain: np.ndarray | None = None
    draw: np.ndarray | None = None
    label: str = "posterior"

    @property
    def n_draws(self) -> int:
        """Number of draws D."""
        return len(self.halflife_km)

    @property
    def has_location(self) -> bool:
        """Whether the model has the location block (county effects, gamma)."""
        return self.county_effect is not None

    @property
    def chain_labels(self) -> np.ndarray:
        """The distinct chain labels, in order."""
        _, first = np.unique(self.chain, return_index=True)
        return self.chain[np.sort(first)]

    @property
    def draw_labels(self) -> np.ndarray:
        """The draw labels of one chain: with ``chain_labels`` the chain x draw grid of the draws
        (as ``thin_per_chain`` keeps it)."""
        labels = self.draw[self.chain == self.chain[0]]
        if len(labels) * len(self.chain_labels) != self.n_draws:
            raise BayesSpillError("these draws do not form a chain x draw grid")
        return labels

    def take(self, index) -> PosteriorDraws:
        """The draws at positions ``index`` of the leading axis.

        Parameters
        ----------
        index : array_like of int
            Positions in ``range(n_draws)``.

        Returns
        -------
        PosteriorDraws
        """
        index = np.asarray(index)
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value[index] if isinstance(value, np.ndarray) else value
        return PosteriorDraws(**values)

    def thin(self, n_draws: int | None) -> PosteriorDraws:
        """About ``n_draws`` draws evenly spaced over the stacked draws (all when None or more).

        Parameters
        ----------
        n_draws : int or None
            Draws wanted.

        Returns
        -------
        PosteriorDraws
        """
        return self.take(thin_indices(self.n_draws, n_draws))

    def thin_per_chain(self, n_draws: int) -> PosteriorDraws:
        """About ``n_draws`` draws: the same evenly spaced draw positions in every chain, so that
        the result is a chain x draw grid (``chain_labels`` x ``draw_labels``).

        Parameters
        ----------
        n_draws : int
            Draws wanted over all chains.

        Returns
        -------
        PosteriorDraws
        """
        n_chains = len(self.chain_labels)
        per_chain = self.n_draws // n_chains
        positions = per_chain_positions(per_chain, n_chains, n_draws)
        return self.take((np.arange(n_chains)[:, None] * per_chain + positions[None, :]).ravel())

    @classmethod
    def from_posterior(cls, posterior: xr.Dataset, firms=None) -> PosteriorDraws:
        """Stack the chains and draws of a posterior group.

        Parameters
        ----------
        posterior : xarray.Dataset
            The ``posterior`` group of a fit.
        firms : array_like of str, optional
            The panel's firms: the posterior's firm coordinate must list them in this order (a
            PosteriorError says otherwise), and a homogeneous alpha is repeated for each.

        Returns
        -------
        PosteriorDraws
        """
        if "halflife_km" not in posterior:
            raise PosteriorError("the posterior has no halflife_km: was it written by bayes-spill fit?")

        def stacked(name: str) -> np.ndarray:
            da = posterior[name]
            extra = [d for d in da.dims if d not in ("chain", "draw")]
            values = da.transpose("chain", "draw", *extra).values
            return values.reshape(-1, *values.shape[2:])

        def optional(name: str) -> np.ndarray | None:
            return stacked(name) if name in posterior else None

        halflife = stacked("halflife_km")
        alpha = stacked("alpha")
        if alpha.ndim == 1:  # homogeneous specification: one alpha for every firm
            n_firms = len(firms) if firms is not None else 1
            alpha = np.repeat(alpha[:, None], n_firms, axis=1)
        elif firms is not None and not np.array_equal(
            posterior[FIRM].values.astype(str), np.asarray(firms).astype(str)
        ):
            raise PosteriorError("the posterior's firms do not match the rebuilt panel (was the data file changed?)")
        location = "county_effect" in posterior
        n_chains, n_per_chain = posterior.sizes["chain"], posterior.sizes["draw"]
        has_beta = all(n in posterior for n in BETA_NAMES)
        return cls(
            halflife_km=halflife,
            alpha=alpha,
            beta=np.column_stack([stacked(n) for n in BETA_NAMES]) if has_beta else None,
            year_effect=optional("year_effect"),
            sigma_w=optional("sigma_w"),
            mu_alpha=optional("mu_alpha"),
            sigma_alpha=optional("sigma_alpha"),
            gamma=(stacked("gamma") if "gamma" in posterior else np.zeros(len(halflife))) if location else None,
            county_effect=stacked("county_effect") if location else None,
            chain=np.repeat(posterior["chain"].values, n_per_chain),
            draw=np.tile(posterior["draw"].values, n_chains),
        )

    @classmethod
    def from_truth(cls, truth: dict, firms, choice_fips) -> PosteriorDraws:
        """A simulation's true parameters as a single draw, on the fit's firms and choice set.

        The true county effects are those of the simulator (defined on every county); restricted
        to the choice set they give the conditional logit the fit estimates (IIA).

        Parameters
        ----------
        truth : dict
            A simulation's truth (``panel.truth``, truth.json): "parameters", "alpha" by firm,
            "county_effect" by FIPS.
        firms : array_like of str
            The fit's firms, in order.
        choice_fips : array_like of str
            FIPS codes of the fit's choice set, in order.

        Returns
        -------
        PosteriorDraws
            One draw labelled "truth" (county_effect None when the truth lacks a county of the
            choice set).
        """
        if not truth or "alpha" not in truth:
            raise BayesSpillError(
                "this panel carries no simulation truth (panel.truth with 'alpha'): it is not simulated"
            )
        p = truth["parameters"]
        firms = [str(f) for f in firms]
        alpha_by_firm = {str(k): float(v) for k, v in truth["alpha"].items()}
        missing = [f for f in firms if f not in alpha_by_firm]
        if missing:
            raise BayesSpillError(f"the truth has no alpha for firm(s) {', '.join(missing[:5])}")
        effects = {str(k): float(v) for k, v in truth.get("county_effect", {}).items()}
        choice_fips = [str(f) for f in choice_fips]
        county_effect = (
            np.array([[effects[f] for f in choice_fips]]) if all(f in effects for f in choice_fips) else None
        )
        return cls(
            halflife_km=np.array([p["halflife_km"]], dtype=float),
            alpha=np.array([[alpha_by_firm[f] for f in firms]]),
            gamma=np.array([p["gamma"]], dtype=float),
            mu_alpha=np.array([p["mu_alpha"]], dtype=float),
            sigma_alpha=np.array([p["sigma_alpha"]], dtype=float),
            county_effect=county_effect,
            label="truth",
        )
