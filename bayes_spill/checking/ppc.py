"""Posterior predictive checks of a fit: replicated data, test statistics and their p-values.

Replicated data (stored as the ``posterior_predictive`` group of DIR/posterior.nc), for a thinned
set of posterior draws s:

- log sales. The firm fixed effects u_i are integrated out of the likelihood (only within-firm
  deviations are modelled), so only the within-firm part is replicated:
      q_rep_it = mean_t(q_it)                                  (each firm's observed mean)
                 + [mu_it - mean_t(mu_it)]                     (fitted within-firm deviation)
                 + [w_it - mean_t(w_it)],  w_it ~ N(0, sigma_w)  (fresh noise, demeaned in-firm)
  with mu_it = z_it beta + alpha_i S_it(lambda) + v_t at draw s. A replicate therefore never
  tests the level of a firm's sales, only their movement over its years.
- county choices: each firm draws a county of the choice set from the multinomial logit
  softmax_l(a_l + gamma alpha_i Sbar_l(lambda)) with the draw's county_effect, gamma, alpha_i and
  half-life (the field Sbar is the observed one, as in the likelihood: a partial-likelihood check).

Test statistics T, observed against replicated, each with a posterior predictive p-value
p = Pr(T_rep >= T_obs):

- locations: the share of firms in each of the largest counties and the Herfindahl index of
  firms across counties, on the replicated county choices;
- sorting: the four slopes of the paper's Table 4 (median and robust regression of the naive
  within-firm OLS alpha_hat_i on Sbar at the firm's county; all firms and the top-20 spillover
  counties). These depend on the parameters (beta, v_t, the half-life) as well as on the data, so
  they are realized discrepancies T(y, theta_s) (Gelman, Meng and Stern 1996): the observed and
  the replicated slopes are computed with the same draw's parameters, replicated log sales at the
  observed counties (the production likelihood conditions on location). Two replicates: with the
  draw's alpha_i ("posterior alpha") and with a fresh alpha_i drawn from the model's distribution
  of alpha given the firm's county, N(mu, sigma) tilted by the logit ("alpha | county"): the second
  asks whether mu_alpha, sigma_alpha and gamma alone reproduce the sorting in the data;
- production residuals (within-firm, at each draw): their spread, their first-order
  autocorrelation within firm (Assumption 2 says the shocks are serially independent; demeaning
  makes both observed and replicated values slightly negative, so compare them, not zero) and
  their excess kurtosis (Assumption 4 says normal).

A p-value below 0.05 or above 0.95 puts the data in the outer 10% of what the model replicates
(EXTREME_P); realized-discrepancy p-values concentrate around 0.5, so this flags real misfit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayes_spill.inference.draws import PosteriorDraws
from bayes_spill.inference.results import as_fit
from bayes_spill.model import integrated
from bayes_spill.model.likelihood import FIRM, ModelData
from bayes_spill.model.within import within_firm
from bayes_spill.twostep.table4 import TABLE4_COLUMNS, table4_slopes, within_slope

PPC_GROUP = "posterior_predictive"
OBS = "obs"
DEFAULT_PPC_DRAWS = 200
TOP_COUNTIES = 5
EXTREME_P = 0.05  # two-sided: p < 0.05 or p > 0.95
ALPHA_Z = np.linspace(-6.0, 6.0, 241)  # grid for drawing alpha | county, in sd of Normal(mu, sigma)


# -- spillovers at every draw ---------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CheckData:
    """What every check needs from a fit, rebuilt once: the panel, the model's numbers, the
    parameters at the thinned draws and the spillovers at each of them."""

    panel: object
    config: object
    data: ModelData
    params: PosteriorDraws  # the same draw positions in every chain (a chain x draw grid)
    s_it: np.ndarray  # (S, n_obs) S_it(lambda_s), as the production equation uses it
    sbar: np.ndarray | None  # (S, L_choice) Sbar_l(lambda_s) over the choice set, transformed
    s_county: np.ndarray  # (S, N) Sbar at each firm's county (the Table-4 regressor), transformed

    @property
    def has_location(self) -> bool:
        return self.params.has_location


def check_data(fit, n_draws: int = DEFAULT_PPC_DRAWS) -> CheckData:
    """The fit's panel and model data, its parameters at about ``n_draws`` draws (the same draw
    positions in every chain) and the spillovers at each of them.

    Parameters
    ----------
    fit : Fit, xarray.DataTree, str or pathlib.Path
        The fit (a tree or a fit folder is opened as a Fit).
    n_draws : int
        Posterior draws wanted, over all chains.

    Returns
    -------
    CheckData
    """
    fit = as_fit(fit)
    config, panel, data = fit.config, fit.panel, fit.model_data
    params = fit.draws.thin_per_chain(n_draws)
    spec = config.model
    s_it = np.empty((params.n_draws, panel.n_obs))
    sbar = np.empty((params.n_draws, len(data.spill.choice_set)))
    for k, h in enumerate(params.halflife_km):
        s_it[k] = spec.spillover_transform.firm_year(data.spill, float(h))
        sbar[k] = spec.spillover_transform.choice(data.spill, float(h))
    s_county = sbar[:, data.spill.firm_choice]
    return CheckData(
        panel=panel,
        config=config,
        data=data,
        params=params,
        s_it=s_it,
        sbar=sbar if spec.location_block else None,
        s_county=s_county,
    )


# -- replicated data ------------------------------------------------------------------------------
def _linear_predictor(cd: CheckData, alpha: np.ndarray) -> np.ndarray:
    """mu_it = z_it beta + alpha_i S_it + v_t at every draw: (S, n_obs)."""
    p, panel = cd.params, cd.panel
    return p.beta @ cd.data.inputs.T + alpha[:, panel.obs_firm] * cd.s_it + p.year_effect[:, panel.obs_year]


def _firm_mean(values: np.ndarray, cd: CheckData) -> np.ndarray:
    return values - within_firm(values, cd.panel.obs_firm, cd.data.years_per_firm, axis=-1)


@dataclass(frozen=True, eq=False)
class Replicates:
    log_sales: np.ndarray  # (S, n_obs)
    noise: np.ndarray  # (S, n_obs) the demeaned fresh noise (the replicated within residuals)
    choice: np.ndarray | None  # (S, N) positions in the choice set


def replicate(cd: CheckData, rng: np.random.Generator) -> Replicates:
    """Replicated log sales and county choices at every thinned draw (see the module docstring)."""
    p, panel = cd.params, cd.panel
    mu = _linear_predictor(cd, p.alpha)
    fitted_within = within_firm(mu, panel.obs_firm, cd.data.years_per_firm, axis=-1)
    noise = within_firm(rng.normal(size=mu.shape) * p.sigma_w[:, None], panel.obs_firm, cd.data.years_per_firm, axis=-1)
    observed_mean = _firm_mean(cd.data.q[None, :], cd)[0]
    log_sales = observed_mean[None, :] + fitted_within + noise
    choice = None
    if cd.has_location:
        choice = np.empty((p.n_draws, panel.n_firms), dtype=np.int64)
        for k in range(p.n_draws):
            logits = p.county_effect[k][None, :] + p.gamma[k] * p.alpha[k][:, None] * cd.sbar[k][None, :]
            choice[k] = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)  # Gumbel-max draw
    return Replicates(log_sales=log_sales, noise=noise, choice=choice)


def alpha_given_county(cd: CheckData, rng: np.random.Generator) -> np.ndarray:
    """Fresh alpha_i from the model's distribution of alpha given the firm's county at each draw:
    density proportional to N(alpha; mu_alpha, sigma_alpha) * P(l_i | alpha) (Proposition 1's
    f(alpha | l), ``integrated.conditional_cdf`` for one population), drawn by inverse CDF on a
    grid of mu +- 6 sigma."""
    p = cd.params
    out = np.empty((p.n_draws, cd.panel.n_firms))
    chosen = cd.data.spill.firm_choice
    counties = np.arange(len(cd.data.spill.choice_set))
    for k in range(p.n_draws):
        alpha, cdf = integrated.conditional_cdf(
            p.mu_alpha[k], p.sigma_alpha[k], p.gamma[k], p.county_effect[k], cd.sbar[k], counties, ALPHA_Z
        )
        out[k] = integrated.inverse_cdf(rng.uniform(size=cd.panel.n_firms), alpha, cdf[chosen])
    return out


def posterior_predictive(cd: CheckData, reps: Replicates) -> xr.Dataset:
    """The ``posterior_predictive`` group: log_sales (chain, draw, obs) and county (chain, draw,
    firm) as FIPS codes, at the thinned draws (coordinates are the posterior's draw labels)."""
    p, panel = cd.params, cd.panel
    chains, draws = p.chain_labels, p.draw_labels
    shape = (len(chains), len(draws))
    coords = {"chain": chains, "draw": draws, OBS: np.arange(panel.n_obs), FIRM: panel.firms.astype(str)}
    variables = {"log_sales": (("chain", "draw", OBS), reps.log_sales.reshape(*shape, panel.n_obs))}
    if reps.choice is not None:
        fips = panel.counties.fips[cd.data.spill.choice_set][reps.choice].astype(str)
        variables["county"] = (("chain", "draw", FIRM), fips.reshape(*shape, panel.n_firms))
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs["description"] = (
        "Replicated data at thinned posterior draws. log_sales: each firm's observed mean log sales plus the "
        "fitted within-firm deviation plus fresh N(0, sigma_w) noise demeaned within firm (firm effects are "
        "integrated out). county: drawn from the multinomial logit with the draw's county_effect, gamma, alpha "
        "and Sbar(halflife)."
    )
    return ds


# -- test statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Statistic:
    """One test statistic: its values on the observed data and on the replicates, per draw."""

    name: str
    check: str  # "locations", "sorting", "production"
    observed: np.ndarray  # (S,) constant for data-only statistics
    replicated: np.ndarray  # (S,)
    description: str = ""

    @property
    def p_value(self) -> float:
        return ppp_value(self.observed, self.replicated)


def ppp_value(observed: np.ndarray, replicated: np.ndarray) -> float:
    """Posterior predictive p-value Pr(T_rep >= T_obs), ties counted half; draws where either is
    nan are left out."""
    observed = np.broadcast_to(np.asarray(observed, dtype=float), np.shape(replicated))
    replicated = np.asarray(replicated, dtype=float)
    ok = np.isfinite(observed) & np.isfinite(replicated)
    if not ok.any():
        return np.nan
    o, r = observed[ok], replicated[ok]
    return float(np.mean(r > o) + 0.5 * np.mean(r == o))


def is_extreme(p: float) -> bool:
    return bool(np.isfinite(p) and (p < EXTREME_P or p > 1.0 - EXTREME_P))


def herfindahl(choice: np.ndarray, n_alternatives: int) -> np.ndarray:
    """Herfindahl index of firms across counties, per row of ``choice`` (positions)."""
    choice = np.atleast_2d(choice)
    counts = np.stack([np.bincount(row, minlength=n_alternatives) for row in choice])
    shares = counts / choice.shape[1]
    return (shares**2).sum(axis=1)


def location_statistics(cd: CheckData, reps: Replicates, top: int = TOP_COUNTIES) -> list[Statistic]:
    if reps.choice is None:
        return []
    observed = cd.data.spill.firm_choice
    n_alt = len(cd.data.spill.choice_set)
    counts = np.bincount(observed, minlength=n_alt)
    largest = np.lexsort((np.arange(n_alt), -counts))[:top]
    stats = []
    counties = cd.panel.counties
    for pos in largest:
        index = cd.data.spill.choice_set[pos]
        label = f"{counties.name[index]}, {counties.state[index]} ({counties.fips[index]})"
        obs = np.full(cd.params.n_draws, np.mean(observed == pos))
        stats.append(
            Statistic(
                f"share of firms in {label}",
                "locations",
                obs,
                np.mean(reps.choice == pos, axis=1),
                "firm share of a largest county",
            )
        )
    hhi_obs = herfindahl(observed[None, :], n_alt)[0]
    stats.append(
        Statistic(
            "Herfindahl index of firms across counties",
            "locations",
            np.full(cd.params.n_draws, hhi_obs),
            herfindahl(reps.choice, n_alt),
            "sum over counties of squared firm shares",
        )
    )
    return stats


def _table4_draws(alpha_hat: np.ndarray, s_county: np.ndarray, top_k: int, firm_county: np.ndarray) -> np.ndarray:
    """(S, 4) Table-4 slopes, one row per draw."""
    out = np.empty((alpha_hat.shape[0], len(TABLE4_COLUMNS)))
    for k in range(alpha_hat.shape[0]):
        out[k] = table4_slopes(alpha_hat[k], s_county[k], _top_mask(firm_county, s_county[k], top_k))
    return out


def _top_mask(firm_county: np.ndarray, s_at_firm: np.ndarray, k: int) -> np.ndarray:
    counties, first = np.unique(firm_county, return_index=True)
    order = np.lexsort((counties, -s_at_firm[first]))
    return np.isin(firm_county, counties[order[:k]])


def sorting_statistics(cd: CheckData, reps: Replicates, rng: np.random.Generator, top_k: int = 20) -> list[Statistic]:
    """Table-4 slopes, observed against the two replicates (realized discrepancies)."""
    p, panel = cd.params, cd.panel
    resid_base = p.beta @ cd.data.inputs.T + p.year_effect[:, panel.obs_year]  # z beta + v_t
    obs_hat, _ = within_slope(cd.data.q[None, :] - resid_base, cd.s_it, panel.obs_firm, panel.n_firms)
    rep_hat, _ = within_slope(reps.log_sales - resid_base, cd.s_it, panel.obs_firm, panel.n_firms)
    observed = _table4_draws(obs_hat, cd.s_county, top_k, panel.firm_county)
    replicated = _table4_draws(rep_hat, cd.s_county, top_k, panel.firm_county)
    stats = [
        Statistic(
            f"Table 4 slope, {col} (posterior alpha)",
            "sorting",
            observed[:, j],
            replicated[:, j],
            "alpha_hat on S at the firm's county",
        )
        for j, col in enumerate(TABLE4_COLUMNS)
    ]
    if cd.has_location and p.mu_alpha is not None:
        fresh = alpha_given_county(cd, rng)
        y = fresh[:, panel.obs_firm] * cd.s_it + reps.noise
        fresh_hat, _ = within_slope(y, cd.s_it, panel.obs_firm, panel.n_firms)
        mixed = _table4_draws(fresh_hat, cd.s_county, top_k, panel.firm_county)
        stats += [
            Statistic(
                f"Table 4 slope, {col} (alpha | county)",
                "sorting",
                observed[:, j],
                mixed[:, j],
                "replicate with alpha_i drawn from the model's f(alpha | county)",
            )
            for j, col in enumerate(TABLE4_COLUMNS)
        ]
    return stats


def residual_statistics(
    residuals: np.ndarray, obs_firm: np.ndarray, obs_calendar_year: np.ndarray, dof: float
) -> dict[str, np.ndarray]:
    """Spread, within-firm lag-1 autocorrelation and excess kurtosis of within-firm residuals,
    per row (draw). dof = sum over firms of (T_i - 1)."""
    e = np.atleast_2d(residuals)
    ss = (e**2).sum(axis=1)
    pairs = (obs_firm[1:] == obs_firm[:-1]) & (obs_calendar_year[1:] == obs_calendar_year[:-1] + 1)
    lag = (e[:, 1:] * e[:, :-1])[:, pairs].sum(axis=1)
    m2 = (e**2).mean(axis=1)
    return {
        "spread": np.sqrt(ss / dof),
        "autocorrelation": lag / ss,
        "kurtosis": (e**4).mean(axis=1) / m2**2 - 3.0,
    }


def production_statistics(cd: CheckData, reps: Replicates) -> list[Statistic]:
    panel = cd.panel
    mu = _linear_predictor(cd, cd.params.alpha)
    e_obs = within_firm(cd.data.q[None, :] - mu, panel.obs_firm, cd.data.years_per_firm, axis=-1)
    calendar = panel.years[panel.obs_year]
    dof = float((panel.years_per_firm - 1).sum())
    obs = residual_statistics(e_obs, panel.obs_firm, calendar, dof)
    rep = residual_statistics(reps.noise, panel.obs_firm, calendar, dof)
    labels = {
        "spread": ("residual spread (sd of within-firm residuals)", "sigma_w as the data show it"),
        "autocorrelation": (
            "residual autocorrelation within firm (lag 1)",
            "Assumption 2: serially independent shocks",
        ),
        "kurtosis": ("residual excess kurtosis", "Assumption 4: normal shocks"),
    }
    return [Statistic(labels[k][0], "production", obs[k], rep[k], labels[k][1]) for k in obs]


@dataclass(frozen=True, eq=False)
class PPCResult:
    statistics: list[Statistic]
    group: xr.Dataset  # the posterior_predictive group

    def table(self) -> pd.DataFrame:
        rows = []
        for s in self.statistics:
            rep = s.replicated[np.isfinite(s.replicated)]
            obs = s.observed[np.isfinite(s.observed)]
            rows.append(
                {
                    "statistic": s.name,
                    "check": s.check,
                    "observed": float(np.median(obs)) if len(obs) else np.nan,
                    "replicated_median": float(np.median(rep)) if len(rep) else np.nan,
                    "replicated_q5": float(np.quantile(rep, 0.05)) if len(rep) else np.nan,
                    "replicated_q95": float(np.quantile(rep, 0.95)) if len(rep) else np.nan,
                    "p_value": s.p_value,
                    "extreme": is_extreme(s.p_value),
                    "finite_draws": int(
                        np.sum(
                            np.isfinite(np.broadcast_to(s.observed, np.shape(s.replicated))) & np.isfinite(s.replicated)
                        )
                    ),
                }
            )
        return pd.DataFrame(rows).set_index("statistic")


def run_ppc(fit, n_draws: int = DEFAULT_PPC_DRAWS, seed: int | None = None) -> PPCResult:
    """Replicate the data at thinned draws and compute every test statistic.

    Parameters
    ----------
    fit : Fit, xarray.DataTree, str or pathlib.Path
        The fit (a tree or a fit folder is opened as a Fit).
    n_draws : int
        Posterior draws to replicate at, over all chains.
    seed : int, optional
        None uses the fit's seed, so a check is reproducible.

    Returns
    -------
    PPCResult
        The statistics and the ``posterior_predictive`` group.
    """
    cd, reps, rng = _replicated(fit, n_draws, seed)
    stats = [*location_statistics(cd, reps), *sorting_statistics(cd, reps, rng), *production_statistics(cd, reps)]
    return PPCResult(statistics=stats, group=posterior_predictive(cd, reps))


def replicated_group(fit, n_draws: int = DEFAULT_PPC_DRAWS, seed: int | None = None) -> xr.Dataset:
    """The ``posterior_predictive`` group of ``run_ppc`` with the same arguments, without its test
    statistics (the Table 4 regressions on every replicate are most of a check's time).

    Parameters
    ----------
    fit : Fit, xarray.DataTree, str or pathlib.Path
        The fit.
    n_draws : int
        Posterior draws to replicate at, over all chains.
    seed : int, optional
        None uses the fit's seed.

    Returns
    -------
    xarray.Dataset
    """
    cd, reps, _ = _replicated(fit, n_draws, seed)
    return posterior_predictive(cd, reps)


def _replicated(fit, n_draws: int, seed: int | None):
    """(check data, replicates, the random stream after replicating) of a fit at thinned draws."""
    fit = as_fit(fit)
    cd = check_data(fit, n_draws)
    seed = fit.seed if seed is None else seed
    rng = np.random.default_rng([seed, 4])  # stream 4: tracker issue 4's checks
    return cd, replicate(cd, rng), rng


# -- verdicts -------------------------------------------------------------------------------------
CHECK_TITLES = {
    "locations": "Where firms locate (replicated county choices)",
    "sorting": "Sorting evidence (Table 4 slopes)",
    "production": "Production residuals",
}


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def ppc_verdicts(table: pd.DataFrame) -> dict[str, str]:
    """A plain-language verdict per check group ("locations", "sorting", "production") from the
    statistics table: OK when every p-value is between EXTREME_P and 1 - EXTREME_P, else MISFIT
    naming each statistic in the tail and which way the data lean. A statistic whose p-value is
    not a number is named with why it cannot be computed: the verdict is then CANNOT BE COMPUTED
    (none left), INCOMPLETE (the rest inside) or MISFIT, never OK."""
    verdicts = {}
    for check in CHECK_TITLES:
        rows = table[table["check"] == check]
        if rows.empty:
            verdicts[check] = "not applicable: this model has no location choice."
            continue
        known = rows[np.isfinite(rows["p_value"].astype(float))]
        unknown = _not_computable(rows[~np.isfinite(rows["p_value"].astype(float))])
        if known.empty:
            verdicts[check] = f"CANNOT BE COMPUTED: {unknown}."
            continue
        rows = known
        bad = rows[rows["extreme"]]
        p_range = f"p from {rows['p_value'].min():.2f} to {rows['p_value'].max():.2f}"
        if unknown and bad.empty:  # never OK while a statistic is missing
            verdicts[check] = (
                f"INCOMPLETE: {unknown}; the other {len(rows)} statistic(s) are inside what the model replicates ({p_range})."
            )
            continue
        if bad.empty:
            what = {
                "locations": "the firm shares of the largest counties and the concentration of firms across counties are inside what the model replicates",
                "sorting": "the replicated Table-4 slopes bracket the observed ones: the model reproduces the association "
                "between firms' alpha_hat and the spillover at their county that the data show",
                "production": "the spread, within-firm autocorrelation and tails of the residuals are what the model's shocks produce",
            }[check]
            verdicts[check] = f"OK: {what} ({p_range})."
        else:
            parts = []
            for name, r in bad.iterrows():
                side = "higher" if r["p_value"] < 0.5 else "lower"
                parts.append(
                    f"{name} is {side} in the data ({_fmt(r['observed'])}) than the model replicates "
                    f"(90% [{_fmt(r['replicated_q5'])}, {_fmt(r['replicated_q95'])}], p = {r['p_value']:.3f})"
                )
            verdicts[check] = f"MISFIT in {len(bad)} of {len(rows)} statistics: " + "; ".join(parts) + "."
            if unknown:
                verdicts[check] += f" Besides, {unknown}."
    return verdicts


def _not_computable(rows: pd.DataFrame) -> str:
    """'<statistic> cannot be computed because ...' for statistics whose p-value is not a number
    (empty when there are none)."""
    reasons: dict[str, list[str]] = {}
    for name, r in rows.iterrows():
        if not np.isfinite(r["observed"]):
            why = "not defined on the observed data (too few firms, counties or years for it, or constant values)"
        elif not np.isfinite(r["replicated_median"]):
            why = "not defined on any replicated dataset (non-finite posterior draws, or too few firms or counties)"
        else:
            why = "never finite in the observed and the replicated data of the same draw"
        reasons.setdefault(why, []).append(str(name))
    parts = []
    for why, names in reasons.items():
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parts.append(f"{listed} cannot be computed because {'it is' if len(names) == 1 else 'they are'} {why}")
    return "; ".join(parts)
