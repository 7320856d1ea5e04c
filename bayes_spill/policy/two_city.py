r"""The two-city location model of the paper's Section 2.6 (Figure 1): its equilibria and their
stability (paper Sections 2.2-2.6, eq. 4, 5, 16; Appendix 7.1).

A unit mass of firms, all with alpha_i = 1 and R_i = 1 (and phi_i = 1; a common phi only scales
profits), two symmetric cities l, m in {1, 2}: equal expenditure E_1 = E_2 = E, equal unit costs
c_1 = c_2 = c, iceberg cost tau_ll = 1 and tau_lm = tau >= 1 between the cities, CES demand with
elasticity sigma > 1. With n = n_1 the share of firms in city 1 (n_2 = 1 - n):

    R&D pools and spillovers (eq. 2), d the distance between the cities:
        calR_l = n_l,      S_l = n_l + exp(-lambda d) n_m

    Price index (eq. 5), constants collected in k = (sigma / (sigma - 1))^(sigma-1) c^(sigma-1):
        P_m^(sigma-1) = k / D_m,   D_m = sum_l n_l S_l^(alpha (sigma-1)) tau_lm^(1-sigma)
        i.e. D_1 = n_1 S_1^(sigma-1) + phi n_2 S_2^(sigma-1),
             D_2 = phi n_1 S_1^(sigma-1) + n_2 S_2^(sigma-1),      phi = tau^(1-sigma)

    Payoff (eq. 16, the location-specific part of eq. 4), a_l from the market-access term:
        a_l = (1/b) log[ c^(1-sigma) sum_m E_m (P_m / tau_lm)^(sigma-1) ]
            = (1/b) log[ 1/D_l + phi/D_m ] + const
        v_l = a_l + gamma alpha log S_l,     gamma = (sigma - 1) / b

    Best-response share (logit of eq. 6 with Gumbel scale b, rescaled to 1):
        BR(n) = exp(v_1) / (exp(v_1) + exp(v_2))

An equilibrium is a root of n = BR(n) on [0, 1]. ``two_city_equilibria`` brackets sign changes
of the excess BR(n) - n on a fine grid (exact zeros, such as the symmetric n = 1/2, are kept),
refines each root with scipy.optimize.brentq, and marks it stable when BR'(n) < 1 (the excess
crosses from above) and unstable otherwise. High tau (phi -> 0): a_l -> -(1/b) log n_l, a
dispersion force, and the symmetric equilibrium is the only one. Low tau (phi -> 1): market
access is the same in both cities and only the spillover term remains; the symmetric point is
unstable once gamma (1 - e^(-lambda d)) / (1 + e^(-lambda d)) > 1, and two asymmetric stable
equilibria appear beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_spill import paper
from bayes_spill.errors import BayesSpillError


# ---------------------------------------------------------------------------------------------
# Two symmetric cities (Section 2.6, Figure 1)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TwoCity:
    """Parameters of the two-city model. gamma = (sigma - 1) / b (paper Section 2.5)."""

    sigma: float = 5.0
    b: float = 1.0
    lam: float = paper.LN2 / paper.HALFLIFE_KM  # per km: the paper's half-life
    distance_km: float = 100.0

    def __post_init__(self) -> None:
        if not self.sigma > 1:
            raise BayesSpillError(f"the CES elasticity sigma must exceed 1, got {self.sigma}")
        if not self.b > 0:
            raise BayesSpillError(f"the logit scale b must be positive, got {self.b}")
        if self.lam < 0 or self.distance_km < 0:
            raise BayesSpillError("lambda and the distance must be non-negative")

    @property
    def gamma(self) -> float:
        return (self.sigma - 1.0) / self.b

    @property
    def decay(self) -> float:
        return float(np.exp(-self.lam * self.distance_km))


def two_city_spillovers(n1, decay: float):
    n1 = np.asarray(n1, dtype=float)
    n2 = 1.0 - n1
    return n1 + decay * n2, n2 + decay * n1


def best_response(n1, tau: float, p: TwoCity):
    """Share of firms choosing city 1 given that a share n1 is there (vectorised in n1)."""
    from scipy.special import expit

    if tau < 1:
        raise BayesSpillError(f"the iceberg cost tau must be at least 1, got {tau}")
    n1 = np.asarray(n1, dtype=float)
    n2 = 1.0 - n1
    s1, s2 = two_city_spillovers(n1, p.decay)
    phi = tau ** (1.0 - p.sigma)
    e1, e2 = n1 * s1 ** (p.sigma - 1.0), n2 * s2 ** (p.sigma - 1.0)
    d1, d2 = e1 + phi * e2, phi * e1 + e2
    a1 = np.log(1.0 / d1 + phi / d2) / p.b
    a2 = np.log(phi / d1 + 1.0 / d2) / p.b
    v1 = a1 + p.gamma * np.log(s1)
    v2 = a2 + p.gamma * np.log(s2)
    return expit(v1 - v2)


@dataclass(frozen=True)
class Equilibrium:
    share: float  # n_1
    slope: float  # BR'(n_1)
    stable: bool


def two_city_equilibria(tau: float, p: TwoCity, grid_points: int = 4001) -> list[Equilibrium]:
    """Every equilibrium share of city 1 at iceberg cost tau (roots of BR(n) - n on [0, 1])."""
    from scipy.optimize import brentq

    grid = np.linspace(0.0, 1.0, grid_points)
    excess = best_response(grid, tau, p) - grid
    roots = [float(g) for g, e in zip(grid, excess) if e == 0.0]
    sign = np.sign(excess)
    for k in np.flatnonzero(sign[:-1] * sign[1:] < 0):
        roots.append(
            brentq(lambda x: float(best_response(x, tau, p) - x), grid[k], grid[k + 1], xtol=1e-14, rtol=1e-14)
        )
    out = []
    h = 1e-6
    for r in sorted(roots):
        lo, hi = max(r - h, 0.0), min(r + h, 1.0)
        slope = float((best_response(hi, tau, p) - best_response(lo, tau, p)) / (hi - lo))
        out.append(Equilibrium(r, slope, slope < 1.0))
    return out


def two_city_table(taus, p: TwoCity) -> pd.DataFrame:
    """One row per (tau, equilibrium): tau, share of city 1, slope of BR, stable."""
    rows = []
    for tau in taus:
        eqs = two_city_equilibria(float(tau), p)
        for e in eqs:
            rows.append(
                {
                    "tau": float(tau),
                    "share_city1": e.share,
                    "br_slope": e.slope,
                    "stable": e.stable,
                    "n_equilibria": len(eqs),
                }
            )
    return pd.DataFrame.from_records(rows)


def format_two_city(table: pd.DataFrame) -> str:
    """Ranges of tau with the same number of equilibria, and the equilibria at each range's ends."""
    lines = ["number of equilibria by iceberg cost tau (share of city 1: s = stable, u = unstable)"]
    taus = table.groupby("tau")["n_equilibria"].first()
    runs: list[list[float]] = []
    for tau, count in taus.items():
        if runs and taus[runs[-1][-1]] == count:
            runs[-1].append(tau)
        else:
            runs.append([tau])
    for run in runs:
        count = int(taus[run[0]])
        span = f"tau {run[0]:.3f}" if len(run) == 1 else f"tau {run[0]:.3f} - {run[-1]:.3f}"
        for tau in dict.fromkeys([run[0], run[-1]]):
            eqs = table[table["tau"] == tau]
            shares = ", ".join(f"{s:.4f} {'s' if st else 'u'}" for s, st in zip(eqs["share_city1"], eqs["stable"]))
            lines.append(f"  {span:<22s} {count} equilibri{'um' if count == 1 else 'a'}   at tau {tau:.3f}: {shares}")
            span = ""
    return "\n".join(lines)


def plot_figure1(p: TwoCity, taus, panel_a_taus, out_png) -> None:
    """Figure 1: (a) best-response share vs n1 with the 45-degree line for a few tau;
    (b) equilibrium shares vs tau, stable solid, unstable dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.6))
    n = np.linspace(0.0, 1.0, 501)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, tau in enumerate(panel_a_taus):
        ax_a.plot(n, best_response(n, float(tau), p), color=colors[k % len(colors)], label=f"tau = {float(tau):g}")
        for e in two_city_equilibria(float(tau), p):
            ax_a.plot([e.share], [e.share], "o", mfc="k" if e.stable else "w", mec="k", ms=5)
    ax_a.plot([0, 1], [0, 1], color="grey", lw=1, label="45-degree line")
    ax_a.set_xlabel("share of firms in city 1, n1")
    ax_a.set_ylabel("best-response share choosing city 1")
    ax_a.set_title("(a) best response (filled: stable, open: unstable)")
    ax_a.legend(fontsize=8)

    table = two_city_table(taus, p)
    _plot_branches(ax_b, table)
    ax_b.set_xlabel("iceberg transport cost tau")
    ax_b.set_ylabel("equilibrium share of city 1")
    ax_b.set_ylim(-0.02, 1.02)
    ax_b.set_title("(b) equilibria (solid: stable, dashed: unstable)")
    fig.suptitle(
        f"Two-city model: sigma = {p.sigma:g}, b = {p.b:g} (gamma = {p.gamma:g}), exp(-lambda d) = {p.decay:.3f}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def equilibrium_branches(table: pd.DataFrame, max_jump: float = 0.15) -> list[list[tuple[float, float, bool]]]:
    """Follow equilibria across neighbouring taus: each root joins the branch whose last point
    (at the previous tau) is nearest, within max_jump; otherwise it starts a new branch."""
    taus = np.sort(table["tau"].unique())
    branches: list[list[tuple[float, float, bool]]] = []
    active: list[int] = []
    for tau in taus:
        eqs = table[table["tau"] == tau]
        claimed: set[int] = set()
        now: list[int] = []
        for share, stable in zip(eqs["share_city1"], eqs["stable"]):
            best, best_gap = None, max_jump
            for b in active:
                gap = abs(branches[b][-1][1] - share)
                if b not in claimed and gap <= best_gap:
                    best, best_gap = b, gap
            if best is None:
                branches.append([])
                best = len(branches) - 1
            branches[best].append((float(tau), float(share), bool(stable)))
            claimed.add(best)
            now.append(best)
        active = now
    return branches


def _plot_branches(ax, table: pd.DataFrame) -> None:
    """Each branch as polylines of constant stability: solid stable, dashed unstable."""
    for points in equilibrium_branches(table):
        run = [points[0]]
        for point in points[1:] + [None]:
            if point is not None and point[2] == run[-1][2]:
                run.append(point)
                continue
            if point is not None:
                run.append(point)  # join the runs at the change of stability
            t, s_, stable = zip(*run)
            style = "-" if run[0][2] else "--"
            if len(run) == 1:
                ax.plot(t, s_, "o", mfc="k" if stable[0] else "w", mec="k", ms=3)
            else:
                ax.plot(t, s_, color="k", ls=style, lw=1.6)
            run = [point] if point is not None else []
