"""Proposition 1 (paper Section 2.7, Appendix 7.2) as a posterior statement: spatial sorting by
absorptive capacity.

For a pair of counties (l1, l2) of the choice set and each posterior draw, the model implies the
density of absorptive capacity among the firms that choose l (Bayes' rule on the logit):

    f(alpha | l) = softmax_l(a + gamma alpha Sbar(lambda)) Normal(alpha; mu_alpha, sigma_alpha) / n_l

evaluated on a grid of alpha (``implied.implied_alpha_density``: mu ± 8 sigma, 801 points,
trapezoid rule). The likelihood ratio f(alpha | l2) / f(alpha | l1) ∝ exp(gamma alpha (Sbar_l2 -
Sbar_l1)) increases in alpha when gamma (Sbar_l2 - Sbar_l1) > 0, so F(. | l2) first-order
stochastically dominates F(. | l1) exactly then.

``sorting_dominance`` orients each pair by the posterior median of Sbar (``high`` = the county
with the larger median spillover) and reports, per pair:

* p_dominance: the share of draws in which the CDFs computed on the grid satisfy
  F(alpha | high) <= F(alpha | low) everywhere and < somewhere (dominance checked directly);
* p_gamma_dS: the share of draws with gamma (Sbar_high - Sbar_low) > 0 (the analytic condition),
  and the number of draws where the two disagree (numerically zero |gamma dS| only);
* the posterior of the gap in mean alpha, E[alpha | high] - E[alpha | low], implied by the
  model, and among the two counties' sample firms (mean of their alpha_i draws);
* the posterior median of the largest CDF gap max_alpha (F_low - F_high).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_spill.errors import BayesSpillError
from bayes_spill.policy.implied import (
    implied_alpha_density,
    implied_cdf,
    implied_expectation,
)
from bayes_spill.policy.world import INTERVAL, FittedWorld, as_world

DOMINANCE_TOL = 1e-12


@dataclass(frozen=True, eq=False)
class PairDraws:
    """Per-draw results for one pair, oriented high (larger median Sbar) vs low."""

    high: str
    low: str
    high_label: str
    low_label: str
    sbar_high: np.ndarray  # (D,)
    sbar_low: np.ndarray
    gamma: np.ndarray
    dominates: np.ndarray  # (D,) bool, from the CDFs
    max_cdf_gap: np.ndarray  # (D,) max over alpha of F_low - F_high
    implied_gap: np.ndarray  # (D,) E[alpha | high] - E[alpha | low]
    firm_gap: np.ndarray | None  # (D,) mean alpha_i of the high county's firms minus the low's
    firms_high: int
    firms_low: int

    @property
    def analytic(self) -> np.ndarray:
        return self.gamma * (self.sbar_high - self.sbar_low) > 0

    def row(self) -> dict:
        lo_q, hi_q = INTERVAL
        analytic = self.analytic
        rec = {
            "high": self.high,
            "low": self.low,
            "high_county": self.high_label,
            "low_county": self.low_label,
            "sbar_high_median": float(np.median(self.sbar_high)),
            "sbar_low_median": float(np.median(self.sbar_low)),
            "p_dominance": float(self.dominates.mean()),
            "p_gamma_dS": float(analytic.mean()),
            "draws_disagreeing": int(np.sum(self.dominates != analytic)),
            "max_cdf_gap_median": float(np.median(self.max_cdf_gap)),
        }
        for name, values in (("implied_mean_gap", self.implied_gap), ("firm_mean_gap", self.firm_gap)):
            if values is None:
                rec.update({f"{name}_median": np.nan, f"{name}_q5": np.nan, f"{name}_q95": np.nan})
            else:
                lo, med, hi = np.quantile(values, [lo_q, 0.5, hi_q])
                rec.update({f"{name}_median": float(med), f"{name}_q5": float(lo), f"{name}_q95": float(hi)})
        rec["firms_high"] = self.firms_high
        rec["firms_low"] = self.firms_low
        return rec


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """'06085:06087,06085:06081' -> [('06085', '06087'), ('06085', '06081')]."""
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 2 or not all(p.isdigit() and len(p) == 5 for p in parts) or parts[0] == parts[1]:
            raise BayesSpillError(
                f"a pair is two different 5-digit FIPS codes joined by ':', e.g. 06085:06087; got {item!r}"
            )
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise BayesSpillError("no county pairs given (e.g. --pairs 06085:06087,06085:06081)")
    return pairs


def default_pairs(world: FittedWorld, n: int = 4) -> list[tuple[str, str]]:
    """The county with the most sample firms paired with the next ``n`` by number of firms."""
    counts = np.bincount(world.panel.firm_county, minlength=len(world.panel.counties))
    order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    fips = world.panel.counties.fips
    return [(str(fips[order[0]]), str(fips[c])) for c in order[1 : n + 1]]


def sorting_dominance(world: FittedWorld, pairs: list[tuple[str, str]]) -> list[PairDraws]:
    """Proposition 1 per pair and posterior draw (see the module docstring).

    Parameters
    ----------
    world : FittedWorld or Fit
        The fitted world (``world.load_world``), or a Fit (every draw).
    pairs : list of (str, str)
        County pairs as FIPS codes, all in the fit's choice set.

    Returns
    -------
    list of PairDraws
        One per pair, oriented high (larger median Sbar) against low.
    """
    world = as_world(world)
    draws = world.draws
    if not draws.has_location:
        raise BayesSpillError("the sorting check needs a fit with the location block (gamma and county effects)")
    positions = {}
    for pair in pairs:
        for f in pair:
            pos = world.choice_position(f)
            if pos is None:
                raise BayesSpillError(
                    f"county {f} is not in the fit's choice set (counties with sample firms by default): f(alpha | county) is undefined there"
                )
            positions[f] = pos
    sbar = world.sbar(draws)  # (D, L)
    counties = world.panel.counties
    out = []
    for a, b in pairs:
        pa, pb = positions[a], positions[b]
        high, low = (a, b) if np.median(sbar[:, pa]) >= np.median(sbar[:, pb]) else (b, a)
        ph, pl = positions[high], positions[low]
        D = draws.n_draws
        dominates = np.zeros(D, dtype=bool)
        max_gap = np.zeros(D)
        implied_gap = np.zeros(D)
        for d in range(D):
            grid, dens = implied_alpha_density(
                draws.county_effect[d], draws.gamma[d], sbar[d], draws.mu_alpha[d], draws.sigma_alpha[d], [ph, pl]
            )
            cdf = implied_cdf(grid, dens)
            diff = cdf[0] - cdf[1]  # F_high - F_low
            dominates[d] = bool(np.all(diff <= DOMINANCE_TOL) and np.any(diff < -DOMINANCE_TOL))
            max_gap[d] = float(-diff.min())
            means = implied_expectation(grid, dens, grid[None, :])
            implied_gap[d] = means[0] - means[1]
        hi_idx, lo_idx = counties.index_of([high, low])
        firms_h = np.flatnonzero(world.panel.firm_county == hi_idx)
        firms_l = np.flatnonzero(world.panel.firm_county == lo_idx)
        firm_gap = None
        if len(firms_h) and len(firms_l):
            firm_gap = draws.alpha[:, firms_h].mean(axis=1) - draws.alpha[:, firms_l].mean(axis=1)
        out.append(
            PairDraws(
                high,
                low,
                counties.label(int(hi_idx)),
                counties.label(int(lo_idx)),
                sbar[:, ph],
                sbar[:, pl],
                np.asarray(draws.gamma, dtype=float),
                dominates,
                max_gap,
                implied_gap,
                firm_gap,
                len(firms_h),
                len(firms_l),
            )
        )
    return out


def sorting_table(results: list[PairDraws]) -> pd.DataFrame:
    return pd.DataFrame.from_records([r.row() for r in results])


def format_sorting(results: list[PairDraws], n_draws: int) -> str:
    lines = [
        "Proposition 1: does f(alpha | higher-spillover county) stochastically dominate f(alpha | other)?",
        "P(dominance) from the model-implied CDFs per draw; P(gamma dS > 0) the analytic condition; "
        "mean-alpha gaps: posterior median [90% interval]",
        "",
    ]
    for r in results:
        row = r.row()
        lines.append(
            f"{row['high_county']} (Sbar {row['sbar_high_median']:.3g} $ bil) vs {row['low_county']} (Sbar {row['sbar_low_median']:.3g} $ bil)"
        )
        lines.append(
            f"  P(dominance) = {row['p_dominance']:.3f}   P(gamma dS > 0) = {row['p_gamma_dS']:.3f}   "
            f"draws disagreeing: {row['draws_disagreeing']}   max CDF gap (median) {row['max_cdf_gap_median']:.3g}"
        )
        lines.append(
            f"  mean alpha gap, implied: {row['implied_mean_gap_median']:.4f} [{row['implied_mean_gap_q5']:.4f}, {row['implied_mean_gap_q95']:.4f}]"
        )
        if r.firm_gap is None:
            lines.append("  mean alpha gap, sample firms: n/a (a county without sample firms)")
        else:
            lines.append(
                f"  mean alpha gap, sample firms ({row['firms_high']} vs {row['firms_low']}): "
                f"{row['firm_mean_gap_median']:.4f} [{row['firm_mean_gap_q5']:.4f}, {row['firm_mean_gap_q95']:.4f}]"
            )
    lines.append(f"({n_draws} posterior draws)")
    return "\n".join(lines)
