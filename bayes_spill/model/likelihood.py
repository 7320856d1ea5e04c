"""The joint hierarchical model in PyMC (docs/model.md; paper eq. 6, 7, 13 and Assumptions 1-5).

Production, firm fixed effects u_i integrated out under a flat prior (the within-firm demeaned
equation, T_i - 1 degrees of freedom per firm):

    q_it = beta_k k_it + beta_l n_it + beta_r r_it + beta_zero_rd zero_rd_it
           + alpha_i S_it(lambda) + u_i + v_t + w_it,        w_it ~ Normal(0, sigma_w)

Location choice, a multinomial logit over the choice set (level of county effects fixed by
having no free intercept):

    P(l_i = l | alpha_i) = softmax_l(a_l + gamma alpha_i Sbar_l(lambda)),
    a_l ~ Normal(x_l' delta, tau)                      (non-centred)

and alpha_i ~ Normal(mu_alpha, sigma_alpha) (non-centred) is shared by both blocks. With
model.integrate_alpha the alpha_i are integrated out instead (production in closed form, location
by Gauss-Hermite quadrature: integrated.py) and drawn back after sampling.
The decay is parametrised by the half-life h = ln 2 / lambda in km.

Conditioning the location likelihood on the observed spillover field is a partial-likelihood
choice: the field is itself an equilibrium outcome of the same choices.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from threadpoolctl import threadpool_limits

from bayes_spill.config import ModelConfig
from bayes_spill.data.panel import PreparedPanel
from bayes_spill.errors import ConfigError, InputError
from bayes_spill.model import denominator, integrated, priors
from bayes_spill.model.within import segment_sum, within_firm
from bayes_spill.paper import LOG_2PI
from bayes_spill.parallel import ordered_in_threads
from bayes_spill.spillover import interpolation, kernel

# The names users type; counterfactual and check code reads them from here.
FIRM, COUNTY, YEAR, COVARIATE = "firm", "county", "year", "county_covariate"
PRODUCTION_COEFFICIENT = "production_coefficient"
BETA_NAMES = ("beta_k", "beta_l", "beta_r", "beta_zero_rd")
FIRM_LOGLIK = "firm_loglik"
# The observed variables (observed_data) and their pointwise log-likelihoods (log_likelihood) share
# these names, as ArviZ's loo_pit pairs them.
LOG_SALES, CHOSEN_COUNTY = "log_sales", "county"
KEY_PARAMETERS = (
    "gamma",
    "halflife_km",
    "mu_alpha",
    "sigma_alpha",
    "sigma_alpha2",
    "beta_k",
    "beta_l",
    "beta_r",
    "sigma_w",
)
# The pointwise log-likelihood of log sales has draws x firm-years entries, the largest array of a
# fit: single precision halves it and keeps ample digits for PSIS weights (LOO-PIT); computed in
# chunks of draws small enough that a chunk's firm-year arrays stay in the processor's cache.
POINTWISE_DTYPE = np.float32
POINTWISE_CHUNK = 16
MAX_POINTWISE_THREADS = 8  # each holds a chunk's firm-year arrays (about 80 MB at 30x the paper's firms)
STATIC_DENOMINATOR_BINS = 16  # the logit denominator's bins under JAX, where shapes must be fixed
# alpha_i integrated out: the denominators of firms x nodes rows read a table in c when there are at
# least this many rows per county of the choice set (table: lattice points x counties; expansion:
# rows x terms x bins). The threshold lies between the timings of docs/performance.md ("Table in c
# or expansion"): the expansion was the faster at 3.5 and 14 rows per county, the table at 35 and 51.
TABLE_ROWS_PER_COUNTY = 24


@dataclass(frozen=True, eq=False)
class ModelData:
    """The numbers the likelihood reads, precomputed once from a panel (numpy)."""

    panel: PreparedPanel
    spill: kernel.SpilloverInputs
    q: np.ndarray
    inputs: np.ndarray  # (n_obs, 4): k, n, r, zero_rd
    years_per_firm: np.ndarray
    county_covariates: np.ndarray  # (L_choice, P), centred and scaled over the choice set
    covariate_names: tuple[str, ...]

    def with_panel(self, panel: PreparedPanel) -> ModelData:
        """The same numbers for another panel object holding the same data (read from another
        file, say), whose source the fit records; the tables already built come along."""
        new = replace(self, panel=panel)
        own = {f.name for f in fields(self)}
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k not in own})  # cached_property values
        return new

    @cached_property
    def halflife_table(self) -> interpolation.HalflifeTable:
        """Sbar_l(h) tabulated in ln h (within 1e-11 $ bil), built on first use: the model and the
        alpha draws of an integrated fit need it; checks and counterfactuals read only .spill."""
        return interpolation.build_halflife_table(self.spill.choice_distance, self.spill.choice_pool)

    @cached_property
    def field_table(self) -> tuple[interpolation.FieldTable, np.ndarray]:
        """S_lt(h) tabulated in ln h for the (county, year) entries the firm-years read (within
        1e-12 $ bil), and each firm-year's entry; built on first use, once however many models are
        built: the model's production spillover and the pointwise log-likelihoods after sampling
        read the same table."""
        spill = self.spill
        entry = spill.obs_receiver * spill.pool.shape[1] + spill.obs_year
        entries, obs_entry = np.unique(entry, return_inverse=True)
        receiver, year = np.divmod(entries, spill.pool.shape[1])
        return interpolation.build_field_table(spill.production_distance, spill.pool, receiver, year), obs_entry


def model_data(panel: PreparedPanel, config: ModelConfig) -> ModelData:
    spec = config.model
    spill = spec.spillover_transform.inputs(panel, spec.choice_set, spec.sbar_year)
    return ModelData(
        panel=panel,
        spill=spill,
        q=panel.q,
        inputs=np.column_stack([panel.k, panel.n, panel.r, panel.zero_rd]),
        years_per_firm=panel.years_per_firm.astype(float),
        county_covariates=_county_covariates(panel, spill.choice_set, spec.county_covariates),
        covariate_names=tuple(spec.county_covariates),
    )


def _county_covariates(panel: PreparedPanel, choice_set: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    columns = []
    for name in names:
        if name == "log_labor_force":
            values = np.log(_labor_force(panel, choice_set))
        elif name in panel.counties.covariates:
            values = np.asarray(panel.counties.covariates[name][choice_set], dtype=float)
        else:
            valid = ["log_labor_force", *panel.counties.covariates]
            raise ConfigError(f"county covariate {name!r} is not in the county table; available: {', '.join(valid)}")
        sd = values.std()
        columns.append((values - values.mean()) / (sd if sd > 0 else 1.0))
    return np.column_stack(columns) if columns else np.zeros((len(choice_set), 0))


def _labor_force(panel: PreparedPanel, choice_set: np.ndarray) -> np.ndarray:
    """The labor force of the choice set, checked positive so that its log is finite."""
    counties = panel.counties
    if "labor_force" not in counties.covariates:
        raise InputError(
            counties.source,
            "labor_force",
            "missing: the county covariate log_labor_force needs it",
            hint="add a labor_force column to the county table, or set model.county_covariates to columns it has",
        )
    values = np.asarray(counties.covariates["labor_force"][choice_set], dtype=float)
    bad = ~(values > 0)
    if bad.any():
        raise InputError(
            counties.source,
            "labor_force",
            "values <= 0 in the choice set: the county covariate log_labor_force takes their log",
            rows=counties.fips[choice_set][bad].tolist(),
            unit="county",
            hint="give every county of the choice set a positive labor force",
        )
    return values


def coords(data: ModelData) -> dict[str, list]:
    panel = data.panel
    return {
        FIRM: panel.firms.tolist(),
        COUNTY: panel.counties.fips[data.spill.choice_set].tolist(),
        YEAR: [int(y) for y in panel.years],
        COVARIATE: list(data.covariate_names),
        PRODUCTION_COEFFICIENT: [*BETA_NAMES, *(f"year_effect[{int(y)}]" for y in panel.years[1:])],
    }


def production_design(data: ModelData) -> np.ndarray:
    """The within-firm demeaned regressors of the linear production coefficients (beta, v_2..v_T)."""
    panel = data.panel
    year_dummies = (panel.obs_year[:, None] == np.arange(1, len(panel.years))[None, :]).astype(float)
    return within_firm(np.column_stack([data.inputs, year_dummies]), data.panel.obs_firm, data.years_per_firm)


def production_whitening(data: ModelData, config: ModelConfig) -> np.ndarray:
    """W with (beta, v_2..v_T) = W z, z about standard normal a posteriori: W = L^-T for the
    Cholesky factor L of the block's precision, within-firm design / pilot sigma_w^2 plus the
    priors' precision. Any fixed W leaves the posterior unchanged (the map is linear); this one
    undoes what a diagonal mass matrix cannot: year effects anchored at v_1 = 0 correlate 0.7-0.9
    with each other and -0.5 with beta_r, and sampled slowly without it (docs/performance.md)."""
    design = production_design(data)
    q = within_firm(data.q, data.panel.obs_firm, data.years_per_firm)
    # One BLAS thread: firm-years x ~30 columns is too narrow for a second thread to pay, and on a
    # busy machine its spin-waiting tripled the CPU time (docs/performance.md, "Scale").
    with threadpool_limits(1, user_api="blas"):
        coef, *_ = np.linalg.lstsq(design, q, rcond=None)
        dof = max(len(q) - data.panel.n_firms - design.shape[1], 1)
        pilot_var = max(float(np.sum((q - design @ coef) ** 2)) / dof, 1e-6 * float(np.var(q)) + 1e-12)
        prior_scales = [config.prior(n).kwargs().get("sigma", 1.0) for n in BETA_NAMES]
        prior_scales += [config.prior("year_effect").kwargs().get("sigma", 1.0)] * (design.shape[1] - len(BETA_NAMES))
        precision = design.T @ design / pilot_var + np.diag(1.0 / np.square(prior_scales))
        factor = np.linalg.cholesky(precision)
        return np.linalg.solve(factor.T, np.eye(len(precision)))


def production_coefficients(data: ModelData, config: ModelConfig):
    """beta (4,) and the free year effects v_2..v_T, sampled as z = W^-1 (beta, v) with their
    configured priors added as a potential (W linear: no Jacobian)."""
    whitening = production_whitening(data, config)
    z = pm.Flat("production_z", dims=PRODUCTION_COEFFICIENT)
    coefficients = pt.dot(whitening, z)
    beta = [pm.Deterministic(name, coefficients[j]) for j, name in enumerate(BETA_NAMES)]
    year_free = coefficients[len(BETA_NAMES) :]
    prior_logp = sum(pm.logp(priors.distribution(config.prior(name)), b) for name, b in zip(BETA_NAMES, beta))
    prior_logp += pm.logp(priors.distribution(config.prior("year_effect")), year_free).sum()
    pm.Potential("production_prior", prior_logp)
    return pt.stack(beta), year_free


def production_loglik(data: ModelData, beta, alpha_obs, spillover, year_effect, sigma_w):
    """Per-firm Gaussian log-likelihood of the within-firm demeaned production equation."""
    panel = data.panel
    resid = data.q - pt.dot(data.inputs, beta) - alpha_obs * spillover - year_effect[panel.obs_year]
    within = within_firm(resid, panel.obs_firm, data.years_per_firm, pt)
    ss = segment_sum(within**2, panel.obs_firm, panel.n_firms, pt)
    dof = data.years_per_firm - 1.0
    return -0.5 * dof * (LOG_2PI + 2.0 * pt.log(sigma_w)) - 0.5 * ss / sigma_w**2


def pointwise_loglik(data: ModelData, spec, draws) -> dict[str, np.ndarray]:
    """The log-likelihood of each observed value at each posterior draw (numpy), given the draw's
    alpha_i, under the names of the observed variables (LOG_SALES, CHOSEN_COUNTY):

    - log_sales (draws, firm-years): firm i's within-firm Gaussian term split over its years,
      -0.5 (T_i - 1)/T_i (log 2 pi + 2 log sigma_w) - 0.5 e_it^2 / sigma_w^2 with e_it the
      within-firm residual, so that a firm's terms add up to production_loglik;
    - county (draws, firms): the logit log-probability of the chosen county, its denominator
      within the model's per-firm share of likelihood_tolerance (``log_denominator_within``; the
      direct sum for an "exact" model). Absent without a location block.

    With alpha_i latent, the two add up per firm to FIRM_LOGLIK. With alpha_i integrated out,
    they are conditional on the drawn alpha_i, and FIRM_LOGLIK (alpha_i integrated) is the term
    to use for LOO over firms.

    Parameters
    ----------
    data : ModelData
        The model's numbers.
    spec : ModelSpec
        The configuration's ``model`` section.
    draws : PosteriorDraws
        The posterior draws (alpha per firm: drawn back for an integrated fit).

    Returns
    -------
    dict
        name -> array with the draws on the leading axis.
    """
    panel = data.panel
    n = draws.n_draws
    share = ((data.years_per_firm - 1.0) / data.years_per_firm)[panel.obs_firm]
    out = {LOG_SALES: np.empty((n, panel.n_obs), dtype=POINTWISE_DTYPE)}

    def log_sales(rows: slice):  # chunks bound the memory of the firm-year arrays
        s_it = np.stack([production_spillover(data, float(h), spec, np) for h in draws.halflife_km[rows]])
        sigma = draws.sigma_w[rows, None]
        resid = (
            data.q[None, :]
            - draws.beta[rows] @ data.inputs.T
            - draws.alpha[rows][:, panel.obs_firm] * s_it
            - draws.year_effect[rows][:, panel.obs_year]
        )
        within = within_firm(resid, panel.obs_firm, data.years_per_firm, axis=-1)
        out[LOG_SALES][rows] = -0.5 * share * (LOG_2PI + 2.0 * np.log(sigma)) - 0.5 * within**2 / sigma**2

    _in_threads(log_sales, n)
    if spec.location_block:
        choice = data.spill.firm_choice
        out[CHOSEN_COUNTY] = np.empty((n, panel.n_firms))
        # the model's per-firm share of the tolerance (exact models: the direct sum)
        row_error = per_firm_error(spec, panel.n_firms) if spec.evaluation != "exact" else 0.0

        def county(rows: slice):
            sbars = choice_spillover_rows(data, draws.halflife_km[rows], spec)
            for k, sbar in zip(range(rows.start, rows.stop), sbars):
                c = draws.gamma[k] * draws.alpha[k]
                a = draws.county_effect[k]
                lse = (
                    denominator.log_denominator_within(a, sbar, c, row_error)
                    if row_error
                    else denominator.exact_log_denominator(a, sbar, c, np)
                )
                out[CHOSEN_COUNTY][k] = a[choice] + c * sbar[choice] - lse

        _in_threads(county, n)
    return out


def _in_threads(task, n: int) -> None:
    """task(rows) for consecutive slices of POINTWISE_CHUNK draws, on every core: numpy releases
    the GIL in the array operations that take the time, and each slice writes only its own rows."""
    slices = [slice(start, min(start + POINTWISE_CHUNK, n)) for start in range(0, n, POINTWISE_CHUNK)]
    for _ in ordered_in_threads(task, slices, MAX_POINTWISE_THREADS):  # re-raises a task's error
        pass


def location_loglik(data: ModelData, county_effect, gamma, alpha, sbar, spec=None, fixed_bins: int | None = None):
    """Per-firm multinomial-logit log-probability of the chosen county.

    Direct sums (firms x counties) unless spec.evaluation is "interpolated": then the binned Taylor
    expansion of denominator.log_denominator, within half of spec.likelihood_tolerance of the
    direct sum over all firms."""
    c = gamma * alpha
    choice = data.spill.firm_choice
    chosen = county_effect[choice] + c * sbar[choice]
    return chosen - log_denominator(data, county_effect, sbar, c, spec, fixed_bins)


def integrated_location_loglik(
    data: ModelData, county_effect, gamma, mean, sd, sbar, spec, fixed_bins: int | None = None
):
    """Per-firm log of the logit probability averaged over alpha_i ~ Normal(mean, sd) by
    spec.quadrature_nodes-point Gauss-Hermite quadrature (integrated.py). The firms x nodes
    denominators come from a table in c where the rows outnumber the counties enough
    (TABLE_ROWS_PER_COUNTY), else from the binned expansion, either within the tolerance."""
    alpha, log_w = integrated.quadrature_alphas(mean, sd, spec.quadrature_nodes)
    c = gamma * alpha
    choice = data.spill.firm_choice
    chosen = county_effect[choice][:, None] + c * sbar[choice][:, None]
    rows_per_county = spec.quadrature_nodes * data.panel.n_firms / len(data.spill.choice_set)
    if spec.evaluation == "exact" or fixed_bins is not None or rows_per_county < TABLE_ROWS_PER_COUNTY:
        lse = log_denominator(data, county_effect, sbar, c.flatten(), spec, fixed_bins)
    else:
        # An error e in a node's LSE moves the firm's averaged probability by at most a factor e^e.
        row_error = per_firm_error(spec, data.panel.n_firms)
        lse = denominator.tabulated_log_denominator(county_effect, sbar, c.flatten(), row_error)
    lse = lse.reshape(c.shape)
    return pt.logsumexp(chosen - lse + log_w[None, :], axis=1)


def per_firm_error(spec, n_firms: int) -> float:
    """Each firm's share of the location log-likelihood's tolerance for its denominator: half of
    likelihood_tolerance over the firms."""
    return 0.5 * spec.likelihood_tolerance / n_firms


def log_denominator(data: ModelData, county_effect, sbar, c, spec=None, fixed_bins: int | None = None):
    """log sum_l exp(a_l + c Sbar_l) for every entry of c. The Taylor terms are set by the number of
    firms: under quadrature each firm's probability is a weighted mean of K node probabilities,
    and a relative error e in each of them moves it by at most e, as for one latent alpha_i."""
    if spec is None or spec.evaluation == "exact":
        return denominator.exact_log_denominator(county_effect, sbar, c, pt)
    terms = denominator.taylor_terms(data.panel.n_firms, spec.likelihood_tolerance)
    value, _ = denominator.log_denominator(county_effect, sbar, c, terms, fixed_bins)
    return value


def production_spillover(data: ModelData, halflife_km, spec, backend=pt):
    """S_it(h) for every firm-year, transformed. Direct (counties x sources x years) when
    spec.evaluation is "exact"; otherwise from interpolation.FieldTable: Chebyshev series in ln h
    per (county, year) entry, within 1e-12 $ bil of the direct sum for every h (counties x years
    x degree per evaluation, and counties grow more slowly than firms). PyTensor in the model,
    numpy for the pointwise log-likelihoods after sampling."""
    spill = data.spill
    if spec.evaluation == "exact":
        return spec.spillover_transform.firm_year(spill, halflife_km, backend)
    table, obs_entry = data.field_table
    s_it = interpolation.evaluate_field_table(table, halflife_km, backend)[obs_entry]
    if spill.own_stock_bil is not None:  # the table holds the county fields S_lt
        s_it = s_it - spill.own_stock_bil
    return spec.spillover_transform.apply(s_it, backend)


def choice_spillover(data: ModelData, halflife_km, spec, backend=pt):
    """Sbar_l(h) over the choice set, transformed: direct, or from data.halflife_table (PyTensor
    in the model, numpy for the alpha draws of an integrated fit)."""
    if spec.evaluation == "exact":
        return spec.spillover_transform.choice(data.spill, halflife_km, backend)
    sbar = interpolation.evaluate_table(data.halflife_table, halflife_km, backend)
    return spec.spillover_transform.apply(sbar, backend)


def choice_spillover_rows(data: ModelData, halflife_km: np.ndarray, spec) -> np.ndarray:
    """numpy: ``choice_spillover`` at each of many half-lives (one row each), in one pass where
    the half-life table serves (it takes an array of half-lives); the direct sums one by one."""
    if spec.evaluation == "exact":
        return np.stack([choice_spillover(data, float(h), spec, np) for h in halflife_km])
    return choice_spillover(data, np.asarray(halflife_km, dtype=float), spec, np)


def build_model(
    panel: PreparedPanel, config: ModelConfig, data: ModelData | None = None, static_shapes: bool = False
) -> pm.Model:
    """The PyMC model of a configuration on a panel.

    static_shapes: for JAX (numpyro, the JAX backend), which compiles fixed array shapes only: the
    logit denominator then has a fixed number of bins (model.denominator_bins, or STATIC_DENOMINATOR_BINS)."""
    data = data or model_data(panel, config)
    spec = config.model
    with pm.Model(coords=coords(data)) as model:
        halflife_km = priors.variable("halflife_km", config.prior("halflife_km"))
        beta, year_free = production_coefficients(data, config)
        sigma_w = priors.variable("sigma_w", config.prior("sigma_w"))
        year_effect = pm.Deterministic("year_effect", pt.concatenate([pt.zeros(1), year_free]), dims=YEAR)

        s_it = production_spillover(data, halflife_km, spec)
        if spec.alpha == "homogeneous":
            alpha = priors.variable("alpha", config.prior("alpha"))
            firm_loglik = production_loglik(data, beta, alpha, s_it, year_effect, sigma_w)
        else:
            mu_alpha = priors.variable("mu_alpha", config.prior("mu_alpha"))
            sigma_alpha = priors.variable("sigma_alpha", config.prior("sigma_alpha"))
            pm.Deterministic("sigma_alpha2", sigma_alpha**2)
            if spec.integrate_alpha:
                resid = data.q - pt.dot(data.inputs, beta) - year_effect[panel.obs_year]
                alpha_mean, alpha_sd, firm_loglik = integrated.conjugate_alpha(
                    resid, s_it, panel.obs_firm, data.years_per_firm, sigma_w, mu_alpha, sigma_alpha, pt
                )
                pm.Deterministic(integrated.ALPHA_PRODUCTION_MEAN, alpha_mean, dims=FIRM)
                pm.Deterministic(integrated.ALPHA_PRODUCTION_SD, alpha_sd, dims=FIRM)
            else:
                alpha_raw = pm.Normal("alpha_raw", 0.0, 1.0, dims=FIRM)
                alpha = pm.Deterministic("alpha", mu_alpha + sigma_alpha * alpha_raw, dims=FIRM)
                firm_loglik = production_loglik(data, beta, alpha[panel.obs_firm], s_it, year_effect, sigma_w)

        if spec.location_block:
            gamma = priors.variable("gamma", config.prior("gamma")) if spec.sorting else pt.constant(0.0)
            delta = priors.variable("county_delta", config.prior("county_delta"), dims=COVARIATE)
            tau = priors.variable("county_tau", config.prior("county_tau"))
            county_raw = pm.Normal("county_effect_raw", 0.0, 1.0, dims=COUNTY)
            county_effect = pm.Deterministic(
                "county_effect", pt.dot(data.county_covariates, delta) + tau * county_raw, dims=COUNTY
            )
            sbar = choice_spillover(data, halflife_km, spec)
            fixed_bins = spec.denominator_bins or (STATIC_DENOMINATOR_BINS if static_shapes else None)
            if spec.integrate_alpha:
                location = integrated_location_loglik(
                    data, county_effect, gamma, alpha_mean, alpha_sd, sbar, spec, fixed_bins
                )
            else:
                location = location_loglik(data, county_effect, gamma, alpha, sbar, spec, fixed_bins)
            firm_loglik = firm_loglik + location

        pm.Potential("loglik", firm_loglik.sum())
        pm.Deterministic(FIRM_LOGLIK, firm_loglik, dims=FIRM)
    return model
