"""The structural simulator: a synthetic industry drawn from the model of docs/model.md on the real
county geography.

Firms draw absorptive capacity alpha_i, an R&D path, inputs and a size; they choose counties by
the multinomial logit of eq. (6) given the spillover field Sbar_l that their own choices create
(iterated to a fixed point with the location shocks held fixed); then they produce by eq. (7).
The result is the same PreparedPanel the loader builds, with the true parameters attached.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill import paper
from bayes_spill.data.geography import Counties, distance_matrix_km, load_counties
from bayes_spill.data.panel import (
    MILLION_PER_BILLION,
    PanelSettings,
    PreparedPanel,
    build_panel,
    rd_stock_by_perpetual_inventory,
)
from bayes_spill.spillover import kernel

TRUTH_PARAMETERS = (
    "beta_k",
    "beta_l",
    "beta_r",
    "beta_zero_rd",
    "halflife_km",
    "gamma",
    "mu_alpha",
    "sigma_alpha",
    "sigma_w",
)


@dataclass(frozen=True)
class SimulationSettings:
    """What to simulate. Parameter defaults are the paper's (Tables 3 and 5, spec. 2);
    sigma_w, beta_zero_rd and the industry's shape are calibration choices (docs/data.md, "The embedded default")."""

    n_firms: int = paper.FIRMS
    first_year: int = paper.FIRST_YEAR
    last_year: int = paper.LAST_YEAR
    mean_years: float = 7.2
    max_years: int = 26
    min_years: int = 3
    zero_rd_share: float = 0.05
    # production, eq. (7)
    beta_k: float = paper.BETA_K
    beta_l: float = paper.BETA_L
    beta_r: float = paper.BETA_R
    beta_zero_rd: float = -0.3
    sigma_w: float = 0.3
    year_effect_sd: float = 0.05
    # spillovers and sorting
    halflife_km: float = paper.HALFLIFE_KM
    gamma: float = paper.GAMMA
    mu_alpha: float = paper.MU_ALPHA
    sigma_alpha2: float = paper.SIGMA_ALPHA2
    # county effects a_l = lf_coef * (log LF_l - mean) + tau * e_l + shift_l
    county_lf_coef: float = 1.0
    county_tau: float = 1.0
    county_shift: tuple[tuple[str, float], ...] = ()
    max_location_iterations: int = 200
    panel: PanelSettings = field(default_factory=PanelSettings)

    @property
    def sigma_alpha(self) -> float:
        return float(np.sqrt(self.sigma_alpha2))

    def __post_init__(self) -> None:
        if self.n_firms < 2:
            raise ValueError(f"n_firms must be at least 2, got {self.n_firms}")
        span = self.last_year - self.first_year + 1
        if span < self.min_years:
            raise ValueError(f"the years {self.first_year}-{self.last_year} are fewer than min_years={self.min_years}")
        if not self.min_years <= self.mean_years <= min(self.max_years, span):
            raise ValueError(f"mean_years={self.mean_years} must lie between min_years and the span of years")
        if self.halflife_km <= 0 or self.sigma_alpha2 < 0 or self.sigma_w <= 0:
            raise ValueError("halflife_km and sigma_w must be positive and sigma_alpha2 non-negative")


# The embedded default (data/datasets.py) is drawn with these: seed = the industry's SIC code.
SOFTWARE_SEED = paper.SIC
# Tech hubs get a county-effect shift so that the industry clusters where the paper's does
# (Santa Clara, Middlesex MA, King WA); everything else follows the model.
SOFTWARE_SETTINGS = SimulationSettings(county_shift=(("06085", 2.0), ("25017", 1.5), ("53033", 1.0)))


def _firm_spans(s: SimulationSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Entry year and number of years per firm; more firms enter in later years."""
    span = s.last_year - s.first_year + 1
    cap = min(s.max_years, span)
    extra_mean = s.mean_years - s.min_years
    # negative binomial extra years (over-dispersed, like Table 2's sd 4.5 around a mean of 7.4)
    n_disp = 2.0
    extra = (
        rng.negative_binomial(n_disp, n_disp / (n_disp + extra_mean), size=s.n_firms)
        if extra_mean > 0
        else np.zeros(s.n_firms, int)
    )
    years = np.minimum(s.min_years + extra, cap)
    entry = np.empty(s.n_firms, dtype=np.int64)
    for i, t in enumerate(years):
        starts = np.arange(s.first_year, s.last_year - t + 2)
        weights = 1.0 + (starts - s.first_year) / span * 2.0
        entry[i] = rng.choice(starts, p=weights / weights.sum())
    return entry, years


def _county_effects(s: SimulationSettings, counties: Counties, rng: np.random.Generator) -> np.ndarray:
    log_lf = np.log(counties.covariates["labor_force"])
    a = s.county_lf_coef * (log_lf - log_lf.mean()) + s.county_tau * rng.standard_normal(len(counties))
    for fips, shift in s.county_shift:
        a[counties.index_of([fips])[0]] += shift
    return a


def _locate_firms(
    frame: pd.DataFrame,
    alpha: np.ndarray,
    county_effect: np.ndarray,
    counties: Counties,
    s: SimulationSettings,
    years: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int, int]:
    """Logit location choice given the spillover field the choices create, to a fixed point.

    The Gumbel shocks are drawn once, so each iteration is a best response to the last field;
    iteration stops when no firm moves. Returns (locations, iterations, firms that would still
    move: 0 at a fixed point).
    """
    n_firms, n_counties = len(alpha), len(counties)
    shocks = rng.gumbel(size=(n_firms, n_counties))
    base = county_effect[None, :] + shocks
    location = np.argmax(base, axis=1)
    obs_firm = frame["firm"].to_numpy()
    obs_year = np.searchsorted(years, frame["fyear"].to_numpy())
    stock_bil = frame["rd_stock"].to_numpy() / MILLION_PER_BILLION
    everywhere = np.arange(n_counties)
    distance = distance_matrix_km(counties, everywhere, everywhere)  # once: ~80 MB, reused below
    best = (n_firms + 1, location)
    seen = set()
    for iteration in range(1, s.max_location_iterations + 1):
        sources, inverse = np.unique(location[obs_firm], return_inverse=True)
        pool = np.zeros((len(sources), len(years)))
        np.add.at(pool, (inverse, obs_year), stock_bil)
        sbar = kernel.decay_weights(distance[:, sources], s.halflife_km) @ pool.mean(axis=1)
        new_location = np.argmax(base + s.gamma * alpha[:, None] * sbar[None, :], axis=1)
        movers = int(np.sum(new_location != location))
        if movers == 0:
            return location, iteration, 0
        if movers < best[0]:
            best = (movers, location)
        state = new_location.tobytes()
        if state in seen:  # a cycle: iterating further only repeats it
            return best[1], iteration, best[0]
        seen.add(state)
        location = new_location
    return best[1], s.max_location_iterations, best[0]


def simulate_industry(
    settings: SimulationSettings | None = None, seed: int = 0, counties: Counties | None = None
) -> PreparedPanel:
    """Draw one synthetic industry from the model: firms, their locations and their panel.

    Parameters
    ----------
    settings : SimulationSettings, optional
        What to simulate (number of firms, years, the model's parameters); default the paper's
        values (Tables 3 and 5, spec. 2).
    seed : int, default 0
        Random seed; the same settings and seed give the same industry.
    counties : Counties, optional
        The county table to place firms in; default the built-in one.

    Returns
    -------
    PreparedPanel
        The panel, with ``truth`` holding the parameters, alpha per firm, the county effects, the
        year effects and the record of the location fixed point.
    """
    s = settings or SimulationSettings()
    counties = counties or load_counties()
    rng = np.random.default_rng(seed)

    entry, n_years = _firm_spans(s, rng)
    gvkeys = np.array([f"{100001 + 37 * i:06d}" for i in range(s.n_firms)])
    size = rng.normal(0.0, 1.4, s.n_firms)
    alpha = rng.normal(s.mu_alpha, s.sigma_alpha, s.n_firms)
    does_rd = rng.random(s.n_firms) >= s.zero_rd_share
    firm_effect = np.log(60.0) + 0.35 * size + rng.normal(0.0, 0.4, s.n_firms)

    firm = np.repeat(np.arange(s.n_firms), n_years)
    age = np.concatenate([np.arange(t) for t in n_years])
    fyear = entry[firm] + age
    n_obs = len(firm)

    def path(level: float, loading: float, growth: float, sd: float) -> np.ndarray:
        return level + loading * size[firm] + growth * age + rng.normal(0.0, sd, n_obs)

    # log-normal sizes with Table 2's heavy tails (sd of logs about 1.6-2)
    emp = np.exp(path(np.log(0.25), 1.0, 0.04, 0.3))
    ppent = np.exp(path(np.log(5.0), 1.1, 0.03, 0.35))
    xrd = np.where(does_rd[firm], np.exp(path(np.log(7.0), 1.0, 0.06, 0.3)), 0.0)

    frame = pd.DataFrame({"firm": firm, "fyear": fyear, "emp": emp, "ppent": ppent, "xrd": xrd})
    frame["rd_stock"] = rd_stock_by_perpetual_inventory(firm, fyear, xrd, s.panel)
    years = np.arange(s.first_year, s.last_year + 1)

    county_effect = _county_effects(s, counties, rng)
    location, iterations, movers = _locate_firms(frame, alpha, county_effect, counties, s, years, rng)

    # production, eq. (7), with the own stock excluded from the spillover the firm receives
    obs_county = location[firm]
    sources, inverse = np.unique(obs_county, return_inverse=True)
    pool = np.zeros((len(sources), len(years)))
    year_pos = fyear - s.first_year
    np.add.at(pool, (inverse, year_pos), frame["rd_stock"].to_numpy() / MILLION_PER_BILLION)
    field_ = kernel.spillover_field(distance_matrix_km(counties, sources, sources), pool, s.halflife_km)
    spill = kernel.firm_spillover(field_, inverse, year_pos, frame["rd_stock"].to_numpy() / MILLION_PER_BILLION)
    stock = frame["rd_stock"].to_numpy()
    r = np.where(stock > 0, np.log(np.where(stock > 0, stock, 1.0)), 0.0)
    year_effect = np.cumsum(rng.normal(0.0, s.year_effect_sd, len(years)))
    year_effect -= year_effect[0]
    q = (
        s.beta_k * np.log(ppent)
        + s.beta_l * np.log(emp)
        + s.beta_r * r
        + s.beta_zero_rd * (stock <= 0)
        + alpha[firm] * spill
        + firm_effect[firm]
        + year_effect[year_pos]
        + rng.normal(0.0, s.sigma_w, n_obs)
    )
    out = pd.DataFrame(
        {
            "gvkey": gvkeys[firm],
            "fyear": fyear,
            "sale": np.exp(q),
            "emp": emp,
            "ppent": ppent,
            "xrd": xrd,
            "fips": counties.fips[obs_county],
        }
    )
    truth = {
        "parameters": {
            **{name: float(getattr(s, name)) for name in TRUTH_PARAMETERS},
            "sigma_alpha2": float(s.sigma_alpha2),
        },
        "alpha": dict(zip(gvkeys.tolist(), alpha.tolist())),
        "county_effect": dict(zip(counties.fips.tolist(), county_effect.tolist())),
        "year_effect": dict(zip(years.tolist(), year_effect.tolist())),
        "location_iterations": iterations,
        "location_converged": movers == 0,
        "location_movers_at_stop": movers,
        "seed": seed,
        "settings": _settings_record(s),
    }
    return build_panel(out, counties, source=f"simulated(seed={seed})", settings=s.panel, truth=truth)


def _settings_record(s: SimulationSettings) -> dict:
    record = asdict(s)
    record["county_shift"] = [list(pair) for pair in s.county_shift]
    return record


def write_simulation(panel: PreparedPanel, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the panel as a Compustat-style CSV and its truth as JSON; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, truth_path = out / "panel.csv", out / "truth.json"
    panel.to_frame().to_csv(csv_path, index=False)
    truth_path.write_text(json.dumps(dict(panel.truth or {}), indent=1, default=_json_default))
    return csv_path, truth_path


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray,)):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
