r"""Location equilibria of the fitted model: an L-county re-solve after a shock (Kerr 2009's
migrating clusters). The two-city model of Figure 1 is in two_city.py.

L-county re-solve of the fitted model (continuum, expected shares)
-------------------------------------------------------------------
With the county effects a_l, gamma, mu_alpha, sigma_alpha and lambda held at a posterior draw,
and the spillover field endogenous:

    n_l = ∫ softmax_l(a + gamma alpha Sbar(n)) Normal(alpha; mu_alpha, sigma_alpha) dalpha
    Sbar_l(n) = T( sum_m exp(-lambda rho(l, m)) [ K n_m + X_m ] )

K = the fit's total location-choice pool (sum of calR_m averaged over the sample years, or in
Sbar's reference year), i.e. N firms times the mean R&D stock per firm, so that at the observed
shares the endogenous pool is the observed one up to differences in R&D per firm across
counties; X_m is the exogenous R&D (the shock, $ bil; a shock county outside the choice set is
a source only); T is the fit's transform (levels, or log with a floor). The integral is
Gauss-Hermite quadrature (40 nodes). The fixed point is found by damped iteration
n <- (1 - theta) n + theta F(n). Each draw is solved without the shock (from the observed shares)
and with it, from two starts: the observed shares and shares concentrated in the shocked county
(90% there, the rest in proportion to the observed shares). Different end points mean several
equilibria; their share is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_spill.errors import BayesSpillError
from bayes_spill.model.integrated import normal_quadrature
from bayes_spill.spillover import kernel

# ---------------------------------------------------------------------------------------------
# L counties: the fitted model re-solved with the spillover field endogenous
# ---------------------------------------------------------------------------------------------
QUADRATURE_NODES = 40


def gauss_hermite(mu: float, sigma: float, nodes: int = QUADRATURE_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ∫ g(alpha) Normal(alpha; mu, sigma) dalpha (the model's rule)."""
    z, w = normal_quadrature(nodes)
    return mu + sigma * z, w


@dataclass(frozen=True, eq=False)
class CountyProblem:
    """One draw's location game: county effects a (L,), decay weights W (L, M) from the M
    sources (the choice set, then extra exogenous sources), K, exogenous pool X (M,)."""

    a: np.ndarray
    gamma: float
    mu: float
    sigma: float
    weights: np.ndarray
    total_pool: float
    exogenous: np.ndarray
    transform: kernel.SpilloverTransform = kernel.LEVELS

    def sbar(self, n: np.ndarray) -> np.ndarray:
        L = len(self.a)
        pool = self.exogenous.copy()
        pool[:L] += self.total_pool * n
        return self.transform.apply(self.weights @ pool)

    def choice_probabilities(self, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nodes, weights, P (K, L)): logit shares at each quadrature node given shares n."""
        from scipy.special import softmax

        nodes, w = gauss_hermite(self.mu, self.sigma)
        logits = self.a[None, :] + self.gamma * nodes[:, None] * self.sbar(n)[None, :]
        return nodes, w, softmax(logits, axis=1)

    def shares(self, n: np.ndarray) -> np.ndarray:
        _, w, prob = self.choice_probabilities(n)
        return w @ prob

    def mean_alpha(self, n: np.ndarray) -> np.ndarray:
        """E[alpha | l] in the equilibrium with shares n (model-implied, Appendix 7.2)."""
        nodes, w, prob = self.choice_probabilities(n)
        return ((w * nodes) @ prob) / (w @ prob)


@dataclass(frozen=True)
class FixedPoint:
    shares: np.ndarray
    iterations: int
    converged: bool
    max_change: float


def solve_fixed_point(
    problem: CountyProblem, start: np.ndarray, damping: float = 0.5, tol: float = 1e-12, max_iter: int = 20000
) -> FixedPoint:
    """Damped iteration n <- (1 - damping) n + damping F(n) from ``start``."""
    n = np.asarray(start, dtype=float) / np.sum(start)
    change = np.inf
    for it in range(1, max_iter + 1):
        new = (1.0 - damping) * n + damping * problem.shares(n)
        change = float(np.max(np.abs(new - n)))
        n = new
        if change < tol:
            return FixedPoint(n, it, True, change)
    return FixedPoint(n, max_iter, False, change)


def concentrated_start(observed: np.ndarray, position: int, mass: float = 0.9) -> np.ndarray:
    out = (1.0 - mass) * observed / observed.sum()
    out[position] += mass
    return out


@dataclass(frozen=True, eq=False)
class CountyShockResult:
    """Per-draw equilibria without and with the shock (arrays (D, L) over the choice set)."""

    choice_fips: np.ndarray
    labels: list[str]
    shock_fips: str
    shock_label: str
    shock_rd_mil: float
    shock_position: int | None  # in the choice set
    observed: np.ndarray  # (L,)
    base: np.ndarray
    shocked: np.ndarray
    alternative: np.ndarray | None  # from the concentrated start
    sbar_base: np.ndarray
    sbar_shocked: np.ndarray
    mean_alpha_base: np.ndarray
    mean_alpha_shocked: np.ndarray
    several: np.ndarray  # (D,) bool: the concentrated start reached another fixed point
    converged: np.ndarray  # (D,) bool: every solve converged
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_draws(self) -> int:
        return self.base.shape[0]

    def county_table(self) -> pd.DataFrame:
        """Per county: observed share and posterior median [90%] of shares, Sbar and mean alpha."""
        q = lambda x: np.quantile(x, [0.05, 0.5, 0.95], axis=0)  # noqa: E731
        base, shocked = q(self.base), q(self.shocked)
        change = q(self.shocked - self.base)
        sb, ss = np.median(self.sbar_base, axis=0), np.median(self.sbar_shocked, axis=0)
        ab, as_ = q(self.mean_alpha_base), q(self.mean_alpha_shocked)
        dalpha = q(self.mean_alpha_shocked - self.mean_alpha_base)
        frame = pd.DataFrame(
            {
                "fips": self.choice_fips,
                "county": self.labels,
                "observed_share": self.observed,
                "base_share_median": base[1],
                "shocked_share_median": shocked[1],
                "shocked_share_q5": shocked[0],
                "shocked_share_q95": shocked[2],
                "share_change_median": change[1],
                "share_change_q5": change[0],
                "share_change_q95": change[2],
                "sbar_base_median": sb,
                "sbar_shocked_median": ss,
                "mean_alpha_base_median": ab[1],
                "mean_alpha_shocked_median": as_[1],
                "mean_alpha_change_median": dalpha[1],
                "mean_alpha_change_q5": dalpha[0],
                "mean_alpha_change_q95": dalpha[2],
            }
        )
        return frame.sort_values("share_change_median", key=np.abs, ascending=False, kind="stable").reset_index(
            drop=True
        )


def shock_sources(world, extra_counties) -> tuple[np.ndarray, np.ndarray]:
    """Source counties (the choice set, then extra exogenous sources) and their distances
    from the choice set (km, (L, M))."""
    from bayes_spill.data.geography import distance_matrix_km

    choice = world.spill.choice_set
    extra = [int(c) for c in extra_counties if int(c) not in set(choice.tolist())]
    sources = np.concatenate([choice, np.asarray(extra, dtype=int)])
    return sources, distance_matrix_km(world.panel.counties, choice, sources)


def county_problem(
    world, d: int, sources: np.ndarray, distance: np.ndarray, exogenous_bil: dict[int, float]
) -> CountyProblem:
    """The draw-d game of a fitted world, with exogenous R&D ($ bil) by county index."""
    draws, spill, spec = world.draws, world.spill, world.config.model
    position = {int(c): k for k, c in enumerate(sources)}
    exogenous = np.zeros(len(sources))
    for c, value in exogenous_bil.items():
        exogenous[position[int(c)]] += value
    return CountyProblem(
        a=np.asarray(draws.county_effect[d], dtype=float),
        gamma=float(draws.gamma[d]),
        mu=float(draws.mu_alpha[d]),
        sigma=float(draws.sigma_alpha[d]),
        weights=kernel.decay_weights(distance, draws.halflife_km[d]),
        total_pool=float(np.sum(spill.choice_pool)),
        exogenous=exogenous,
        transform=spec.spillover_transform,
    )


def county_shock(
    world, shock_fips: str, shock_rd_mil: float, damping: float = 0.5, tol: float = 1e-12
) -> CountyShockResult:
    """Re-solve the location equilibrium of every draw of ``world`` after adding ``shock_rd_mil``
    ($ million of R&D stock, exogenous) to the pool of ``shock_fips``.

    Parameters
    ----------
    world : FittedWorld or Fit
        The fitted world (``world.load_world``), or a Fit (every draw).
    shock_fips : str
        FIPS of the county where the R&D appears.
    shock_rd_mil : float
        The exogenous R&D stock added there, $ million.
    damping : float
        Weight of the new iterate in the damped fixed point.
    tol : float
        Convergence tolerance of the fixed point.

    Returns
    -------
    CountyShockResult
    """
    from bayes_spill.policy.world import as_world

    world = as_world(world)
    draws = world.draws
    if not draws.has_location:
        raise BayesSpillError("the equilibrium re-solve needs a fit with the location block (gamma and county effects)")
    if not np.isfinite(shock_rd_mil) or shock_rd_mil < 0:
        raise BayesSpillError(f"the shock must be a non-negative R&D stock in $ million, got {shock_rd_mil}")
    counties = world.panel.counties
    try:
        shock_idx = int(counties.index_of([shock_fips])[0])
    except KeyError as exc:
        raise BayesSpillError(str(exc.args[0])) from None
    choice = world.spill.choice_set
    position = world.choice_position(shock_fips)
    notes = []
    if position is None:
        notes.append(
            f"{counties.label(shock_idx)} is not in the fit's choice set: its R&D spills over to the choice set, but firms cannot move there"
        )
    counts = np.bincount(world.spill.firm_choice, minlength=len(choice)).astype(float)
    observed = counts / counts.sum()
    shock_bil = float(shock_rd_mil) / 1000.0
    D, L = draws.n_draws, len(choice)
    base = np.zeros((D, L))
    shocked = np.zeros((D, L))
    alternative = np.zeros((D, L)) if position is not None else None
    sbar_base, sbar_shocked = np.zeros((D, L)), np.zeros((D, L))
    alpha_base, alpha_shocked = np.zeros((D, L)), np.zeros((D, L))
    several = np.zeros(D, dtype=bool)
    converged = np.ones(D, dtype=bool)
    sources, distance = shock_sources(world, [shock_idx])
    for d in range(D):
        p0 = county_problem(world, d, sources, distance, {shock_idx: 0.0})
        p1 = county_problem(world, d, sources, distance, {shock_idx: shock_bil})
        fp0 = solve_fixed_point(p0, observed, damping, tol)
        fp1 = solve_fixed_point(p1, observed, damping, tol)
        base[d], shocked[d] = fp0.shares, fp1.shares
        ok = fp0.converged and fp1.converged
        if position is not None:
            fp2 = solve_fixed_point(p1, concentrated_start(observed, position), damping, tol)
            alternative[d] = fp2.shares
            ok = ok and fp2.converged
            several[d] = bool(np.max(np.abs(fp2.shares - fp1.shares)) > 1e-6)
        converged[d] = ok
        sbar_base[d], sbar_shocked[d] = p0.sbar(fp0.shares), p1.sbar(fp1.shares)
        alpha_base[d], alpha_shocked[d] = p0.mean_alpha(fp0.shares), p1.mean_alpha(fp1.shares)
    if not converged.all():
        notes.append(
            f"{int((~converged).sum())} of {D} draws did not converge (damping {damping}): their values are the last iterate"
        )
    labels = [counties.label(int(c)) for c in choice]
    return CountyShockResult(
        counties.fips[choice].astype(str),
        labels,
        shock_fips,
        counties.label(shock_idx),
        float(shock_rd_mil),
        position,
        observed,
        base,
        shocked,
        alternative,
        sbar_base,
        sbar_shocked,
        alpha_base,
        alpha_shocked,
        several,
        converged,
        tuple(notes),
    )


def format_county_shock(result: CountyShockResult, top: int = 8) -> str:
    def cell(x, digits=4):
        lo, med, hi = np.quantile(x, [0.05, 0.5, 0.95])
        return f"{med:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    lines = [
        f"Location equilibrium after ${result.shock_rd_mil:g} million of R&D stock appears in {result.shock_label}",
        "continuum equilibrium with the spillover field endogenous; county effects, gamma, mu_alpha, sigma_alpha, lambda at posterior draws",
        f"posterior median [90% interval] over {result.n_draws} draws",
        "",
    ]
    p = result.shock_position
    if p is not None:
        obs = result.observed[p]
        lines += [
            f"shocked county share: observed {obs:.4f}; equilibrium without shock {cell(result.base[:, p])}; with shock {cell(result.shocked[:, p])}",
            f"  change in share: {cell(result.shocked[:, p] - result.base[:, p])}",
            f"shocked county Sbar ($ bil): without {cell(result.sbar_base[:, p], 3)}; with {cell(result.sbar_shocked[:, p], 3)}",
            f"shocked county mean alpha (sorting): without {cell(result.mean_alpha_base[:, p])}; with {cell(result.mean_alpha_shocked[:, p])}",
            f"  change in mean alpha: {cell(result.mean_alpha_shocked[:, p] - result.mean_alpha_base[:, p])}",
            f"several equilibria (start concentrated in the shocked county reaches another fixed point): {result.several.mean():.3f} of draws",
        ]
        if result.several.any():
            lines.append(
                f"  shocked county share in that other equilibrium: {cell(result.alternative[result.several, p])}"
            )
    table = result.county_table().head(top)
    lines += ["", f"largest share changes (of {len(result.choice_fips)} counties in the choice set):"]
    for _, r in table.iterrows():
        lines.append(
            f"  {r['county']:<36s} share {r['base_share_median']:.4f} -> {r['shocked_share_median']:.4f} "
            f"(change {r['share_change_median']:+.5f} [{r['share_change_q5']:+.5f}, {r['share_change_q95']:+.5f}]); "
            f"Sbar {r['sbar_base_median']:.3g} -> {r['sbar_shocked_median']:.3g}; mean alpha change {r['mean_alpha_change_median']:+.4f}"
        )
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
