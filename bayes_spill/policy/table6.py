"""Table 6 (paper Section 5.4), the policy counterfactual: an entrant with an R&D stock enters a
county, and the firms of that county and its neighbours gain sales through spillovers — as
posterior distributions, under the paper's three mechanisms.

Mechanics (levels model, S in $ bil, the default):

* The entrant, with R&D stock R (entered in $ million, R_bil = R / 1000), raises the pool of its
  county e in the chosen year by R_bil, so the field of county l rises by
  exp(-lambda rho(l, e)) R_bil (eq. 2).
* A firm i of county l seen in that year gains gain_i = alpha_i exp(-lambda rho(l, e)) R_bil in
  log sales (eq. 7); its sales rise by the factor exp(gain_i). With the log-spillover variant
  the gain is alpha_i [log S'_it - log S_it] (floored logs), S'_it = S_it + exp(-lambda rho) R_bil,
  S_it the firm's field that year (own stock excluded when the fit excludes it).
* The county's aggregate sales rise by  sum_i sale_i expm1(gain_i) / sum_i sale_i  (firms of the
  county in that year; when the county has no firm that year, its firms in the latest earlier
  year with firms — or, failing that, the earliest later one — and the output says so).

The three mechanism columns (Table 6, columns 3-5):

* ``decay``   distance decay only: every county's firms are drawn from the entrant county's
  distribution of absorptive capacity (firm mode: the entrant county's firms, with their sales
  weights and alpha draws, placed at county l's distance; implied mode: f(alpha | e)).
* ``sorting`` sorting only: lambda -> 0 for the entrant's R&D, i.e. it reaches county l
  undiminished (weight 1) while each county keeps its own firms / f(alpha | l).
* ``both``    the model.

Where alpha comes from (``alpha=``):

* ``"firm"``    (default) the posterior draws of alpha_i of the county's sample firms, sales-
  weighted as above. Needs sample firms in the county.
* ``"implied"`` the model-implied density of absorptive capacity in county l (Appendix 7.2):
  f(alpha | l) ∝ softmax_l(a + gamma alpha Sbar(lambda)) Normal(alpha; mu_alpha, sigma_alpha),
  evaluated per draw on a grid of alpha (mu ± 8 sigma, trapezoid rule). Aggregate sales weight
  firms by their sales, and by eq. (7) a firm's sales carry the factor exp(alpha T(S_l,t)), so
  the county's percent increase is
      ∫ expm1(alpha Δ_l) exp(alpha T(S_l,t)) f(alpha | l) dalpha / ∫ exp(alpha T(S_l,t)) f(alpha | l) dalpha
  (the rest of a firm's size — inputs, u_i — taken as independent of alpha). Without this
  weighting the implied column misses the fact that in a high-spillover county the high-alpha
  firms are also the large ones. Needs the county in the fit's choice set.

Every cell is computed per posterior draw; tables report the median and the 90% equal-tailed
interval. A zero-size entrant gives exactly zero (expm1(0) = 0). Dollar gains: percent x county
sales from a table (fips, sales in $ million). ``table6_truth`` evaluates the same cells at a
simulation's true parameters (``panel.truth``), so intervals can be checked against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill.data.geography import distance_matrix_km
from bayes_spill.data.panel import MILLION_PER_BILLION, PreparedPanel
from bayes_spill.errors import BayesSpillError, InputError
from bayes_spill.policy.implied import implied_alpha_density, implied_expectation
from bayes_spill.policy.world import (
    INTERVAL,
    FittedWorld,
    as_world,
    truth_world,
    world_from_panel,
)
from bayes_spill.spillover import kernel

MECHANISMS = ("decay", "sorting", "both")
MECHANISM_LABELS = {"decay": "Dist. decay", "sorting": "Sorting", "both": "Both"}
ALPHA_MODES = ("firm", "implied")
DEFAULT_RADIUS_KM = 100.0


# ---------------------------------------------------------------------------------------------
# Table 6
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CountyRow:
    fips: str
    name: str
    distance_km: float
    firms: int  # firms used (seen in year_used)
    year_used: int | None
    in_choice_set: bool


@dataclass(frozen=True, eq=False)
class Table6Result:
    """Per-draw cells: percent (D, C, 3) in MECHANISMS order; usd (D, C) for 'both' or None."""

    entrant_fips: str
    rd_stock_mil: float
    year: int
    alpha_mode: str
    rows: tuple[CountyRow, ...]
    percent: np.ndarray
    usd: np.ndarray | None
    county_sales: dict[str, float] | None
    notes: tuple[str, ...] = ()
    label: str = "posterior"
    truth: "Table6Result | None" = field(default=None)

    def summary(self) -> pd.DataFrame:
        """One row per county: median and 90% interval per mechanism (percent), $ million, truth."""
        lo_q, hi_q = INTERVAL
        records = []
        for c, row in enumerate(self.rows):
            rec = {
                "fips": row.fips,
                "county": row.name,
                "distance_km": round(row.distance_km, 1),
                "firms": row.firms,
                "year_used": row.year_used,
            }
            for k, mech in enumerate(MECHANISMS):
                values = self.percent[:, c, k]
                rec.update(_quantiles(values, f"{mech}_pct", lo_q, hi_q))
                if self.truth is not None:
                    rec[f"{mech}_pct_truth"] = float(self.truth.percent[0, c, k])
            if self.usd is not None:
                rec.update(_quantiles(self.usd[:, c], "both_usd_mil", lo_q, hi_q))
                if self.truth is not None and self.truth.usd is not None:
                    rec["both_usd_mil_truth"] = float(self.truth.usd[0, c])
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def with_truth(self, truth: "Table6Result") -> "Table6Result":
        return Table6Result(**{**self.__dict__, "truth": truth})

    def covered(self) -> np.ndarray:
        """(C, 3) booleans: the truth inside the 90% interval (False where a cell is not comparable)."""
        if self.truth is None:
            raise BayesSpillError("no truth attached: use with_truth(table6_truth(...))")
        mask = self.comparable()
        out = np.zeros(mask.shape, dtype=bool)
        if mask.any():
            lo, hi = np.quantile(self.percent[:, mask], INTERVAL, axis=0)
            t = self.truth.percent[0][mask]
            out[mask] = (lo <= t) & (t <= hi)
        return out

    def comparable(self) -> np.ndarray:
        """(C, 3) distinct cells with a posterior and a truth value. The entrant county's row is
        the same under every mechanism, so only its 'both' cell counts."""
        if self.truth is None:
            return np.zeros(self.percent.shape[1:], dtype=bool)
        mask = np.all(np.isfinite(self.percent), axis=0) & np.isfinite(self.truth.percent[0])
        mask[0, :2] = False
        return mask


def _quantiles(values: np.ndarray, prefix: str, lo_q: float, hi_q: float) -> dict:
    if not np.all(np.isfinite(values)):
        return {f"{prefix}_median": np.nan, f"{prefix}_q5": np.nan, f"{prefix}_q95": np.nan}
    lo, med, hi = np.quantile(values, [lo_q, 0.5, hi_q])
    return {f"{prefix}_median": float(med), f"{prefix}_q5": float(lo), f"{prefix}_q95": float(hi)}


def default_neighbors(world: FittedWorld, entrant: int, radius_km: float = DEFAULT_RADIUS_KM) -> list[str]:
    """The counties with sample firms within radius_km of the entrant's county, nearest first."""
    occupied = world.panel.occupied
    distance = distance_matrix_km(world.panel.counties, [entrant], occupied)[0]
    order = np.argsort(distance, kind="stable")
    return [
        str(world.panel.counties.fips[occupied[i]])
        for i in order
        if distance[i] <= radius_km and occupied[i] != entrant
    ]


def _county_firms_in_year(panel: PreparedPanel, county: int, year: int) -> tuple[np.ndarray, int | None, str | None]:
    """Observation rows of the county's firms in ``year`` (or the fallback year) and a note."""
    obs = np.flatnonzero(panel.obs_county == county)
    if len(obs) == 0:
        return obs, None, None
    obs_years = panel.years[panel.obs_year[obs]]
    if np.any(obs_years == year):
        return obs[obs_years == year], year, None
    earlier = obs_years[obs_years < year]
    used = int(earlier.max()) if len(earlier) else int(obs_years.min())
    label = panel.counties.label(county)
    note = f"{label} has no sample firm in {year}: its firms of {used} are used"
    return obs[obs_years == used], used, note


def read_county_sales(path: str | Path) -> dict[str, float]:
    """A county-sales table (fips, sales in $ million) as {fips: sales}."""
    from bayes_spill.data.files import read_table

    frame = read_table(path)
    for column in ("fips", "sales"):
        if column not in frame.columns:
            raise InputError(
                path,
                column,
                f"missing column; columns found: {', '.join(frame.columns)}",
                hint="a county-sales table has columns fips (5 digits) and sales ($ million)",
            )
    fips = frame["fips"].astype(str).str.strip()
    bad = ~fips.str.fullmatch(r"\d{5}")
    if bad.any():
        raise InputError(
            path,
            "fips",
            "malformed FIPS codes (not exactly 5 digits)",
            rows=list(frame.index[bad.to_numpy()]),
            hint="write FIPS as 5-digit text, e.g. 06085",
        )
    sales = pd.to_numeric(frame["sales"], errors="coerce")
    bad = ~np.isfinite(sales) | (sales < 0)
    if bad.any():
        raise InputError(
            path,
            "sales",
            "missing, non-numeric or negative sales",
            rows=list(frame.index[bad.to_numpy()]),
            hint="sales are $ million, e.g. 7640 for Santa Clara's software sales in 2002",
        )
    if fips.duplicated().any():
        raise InputError(
            path, "fips", "duplicated FIPS codes", rows=list(frame.index[fips.duplicated(keep=False).to_numpy()])
        )
    return dict(zip(fips.tolist(), sales.astype(float).tolist()))


def _field_rows(world: FittedWorld, rows: np.ndarray, year_pos: int, halflife: np.ndarray) -> np.ndarray:
    """S_{l, year}(lambda) in $ bil for county indices ``rows`` per draw: (D, R)."""
    sources = world.spill.sources
    distance = distance_matrix_km(world.panel.counties, rows, sources)
    pool = world.spill.pool[:, year_pos]
    return np.stack([kernel.decay_weights(distance, h) @ pool for h in halflife])


def table6(
    world: FittedWorld,
    county: str,
    rd_stock_mil: float,
    year: int,
    neighbors: list[str] | None = None,
    alpha: str = "firm",
    county_sales: dict[str, float] | None = None,
    radius_km: float = DEFAULT_RADIUS_KM,
) -> Table6Result:
    """The Table-6 cells per draw of ``world.draws`` (see the module docstring).

    Parameters
    ----------
    world : FittedWorld or Fit
        The fitted world (``world.load_world``), or a Fit (every draw).
    county : str
        FIPS of the county the entrant enters.
    rd_stock_mil : float
        The entrant's R&D stock, $ million.
    year : int
        The year of entry.
    neighbors : list of str, optional
        Counties to report besides the entrant's (default: those with sample firms within
        ``radius_km``).
    alpha : {"firm", "implied"}
        Where alpha comes from (see the module docstring).
    county_sales : dict, optional
        {fips: sales, $ million} for the dollar gains.
    radius_km : float
        Radius of the default neighbours.

    Returns
    -------
    Table6Result
    """
    world = as_world(world)
    panel, spec = world.panel, world.config.model
    draws = world.draws
    if alpha not in ALPHA_MODES:
        raise BayesSpillError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    if not np.isfinite(rd_stock_mil) or rd_stock_mil < 0:
        raise BayesSpillError(f"the entrant's R&D stock must be a non-negative number of $ million, got {rd_stock_mil}")
    if alpha == "implied" and not draws.has_location:
        raise BayesSpillError(
            "alpha='implied' needs a fit with the location block (gamma, county effects); use alpha='firm'"
        )
    try:
        entrant = int(panel.counties.index_of([county])[0])
        listed = [county] + [
            f
            for f in dict.fromkeys(neighbors if neighbors is not None else default_neighbors(world, entrant, radius_km))
            if f != county
        ]
        idx = panel.counties.index_of(listed)
    except KeyError as exc:
        raise BayesSpillError(str(exc.args[0])) from None

    notes: list[str] = []
    r_bil = float(rd_stock_mil) / MILLION_PER_BILLION
    distance = distance_matrix_km(panel.counties, idx, [entrant])[:, 0]
    weight = np.exp(-kernel.decay_rate(draws.halflife_km)[:, None] * distance[None, :])  # (D, C)
    transform = spec.spillover_transform
    log_model = transform.kind == "log"

    def gain(delta_s, base_s):
        """Change of the transformed spillover when the field rises by delta_s from base_s."""
        if not log_model:
            return delta_s
        return transform.apply(base_s + delta_s) - transform.apply(base_s)

    # The field in the chosen year (only the log variant needs it).
    year_pos = int(np.argmin(np.abs(panel.years - year)))
    if log_model and panel.years[year_pos] != year:
        notes.append(f"{year} is not a year of the panel: the spillover field of {panel.years[year_pos]} is used")
    field_rows = (
        _field_rows(world, idx, year_pos, draws.halflife_km) if log_model else np.zeros((draws.n_draws, len(idx)))
    )
    if alpha == "implied" and panel.years[year_pos] != year and not log_model:
        notes.append(
            f"{year} is not a year of the panel: the sales weights use the spillover field of {panel.years[year_pos]}"
        )
    own_excluded = world.spill.own_stock_bil is not None

    D, C = draws.n_draws, len(idx)
    percent = np.full((D, C, 3), np.nan)
    rows: list[CountyRow] = []
    firm_sets = []
    for c, county_idx in enumerate(idx):
        obs, used, note = _county_firms_in_year(panel, int(county_idx), year)
        if note and alpha == "firm":
            notes.append(note)
        firm_sets.append((obs, used))
        in_choice = world.choice_position(str(panel.counties.fips[county_idx])) is not None
        rows.append(
            CountyRow(
                str(panel.counties.fips[county_idx]),
                panel.counties.label(int(county_idx)),
                float(distance[c]),
                len(obs),
                used,
                in_choice,
            )
        )

    if alpha == "firm":

        def firm_percent(obs: np.ndarray, w: np.ndarray, base_field: np.ndarray, own: bool) -> np.ndarray:
            """Sales-weighted percent gain (D,) of the firms at observation rows ``obs``."""
            sale = panel.sale[obs]
            a = draws.alpha[:, panel.obs_firm[obs]]  # (D, n)
            base = base_field[:, None] - (
                panel.rd_stock[obs][None, :] / MILLION_PER_BILLION if (own and own_excluded) else 0.0
            )
            g = a * gain(w[:, None] * r_bil, base)
            return 100.0 * (np.expm1(g) * sale[None, :]).sum(axis=1) / sale.sum()

        e_obs, _ = firm_sets[0]
        for c in range(C):
            obs, _ = firm_sets[c]
            if len(obs):
                percent[:, c, 2] = firm_percent(obs, weight[:, c], field_rows[:, c], own=True)
                percent[:, c, 1] = firm_percent(obs, np.ones(D), field_rows[:, c], own=True)
            if len(e_obs):
                # the entrant county's firms (alpha and sales) placed at county c's distance and field
                percent[:, c, 0] = firm_percent(e_obs, weight[:, c], field_rows[:, c], own=c == 0)
        for row in rows:
            if row.firms == 0:
                notes.append(f"{row.name} has no sample firm: no firm-level alpha (try --alpha implied)")
        if len(e_obs) == 0:
            notes.append(
                f"the entrant county {rows[0].name} has no sample firm: the distance-decay-only column needs its firms"
            )
    else:
        positions = [world.choice_position(r.fips) for r in rows]
        for c, row in enumerate(rows):
            if positions[c] is None:
                notes.append(f"{row.name} is not in the fit's choice set: no implied f(alpha | county)")
        sbar = world.sbar(draws)
        # sales weights: a firm's sales carry exp(alpha T(S_l,year)) (eq. 7), so the aggregate
        # gain weights f(alpha | l) by that factor (the entrant county's for the decay column)
        tilt_field = field_rows if log_model else _field_rows(world, idx, year_pos, draws.halflife_km)
        tilt = transform.apply(tilt_field)
        known = [c for c in range(C) if positions[c] is not None]
        for d in range(D):
            args = (draws.county_effect[d], draws.gamma[d], sbar[d], draws.mu_alpha[d], draws.sigma_alpha[d])
            entrant_density = (
                implied_alpha_density(*args, [positions[0]], tilt=[tilt[d, 0]]) if positions[0] is not None else None
            )
            for c in known:
                both = gain(weight[d, c] * r_bil, field_rows[d, c])
                no_decay = gain(r_bil, field_rows[d, c])
                grid, dens = (
                    entrant_density if c == 0 else implied_alpha_density(*args, [positions[c]], tilt=[tilt[d, c]])
                )
                percent[d, c, 2] = 100.0 * implied_expectation(grid, dens, np.expm1(grid * both)[None, :])[0]
                percent[d, c, 1] = 100.0 * implied_expectation(grid, dens, np.expm1(grid * no_decay)[None, :])[0]
            if entrant_density is not None:
                grid, dens = entrant_density
                for c in range(C):
                    both = gain(weight[d, c] * r_bil, field_rows[d, c])
                    percent[d, c, 0] = 100.0 * implied_expectation(grid, dens, np.expm1(grid * both)[None, :])[0]
        if positions[0] is None:
            notes.append("the distance-decay-only column needs f(alpha | entrant county): it is not in the choice set")
    percent = percent + 0.0  # -0.0 (a negative alpha times a zero gain) prints as 0.00

    usd = None
    if county_sales is not None:
        sales = np.array([county_sales.get(r.fips, np.nan) for r in rows])
        missing = [r.fips for r, s in zip(rows, sales) if not np.isfinite(s)]
        if missing:
            notes.append(f"no county sales given for {', '.join(missing)}: no $ figure there")
        usd = percent[:, :, 2] / 100.0 * sales[None, :]
    return Table6Result(
        county,
        float(rd_stock_mil),
        int(year),
        alpha,
        tuple(rows),
        percent,
        usd,
        county_sales,
        tuple(dict.fromkeys(notes)),
        draws.label,
    )


def table6_truth(world_or_panel, county: str, rd_stock_mil: float, year: int, **kwargs) -> Table6Result:
    """The Table-6 cells at a simulation's true parameters (truth['alpha'], halflife_km, gamma,
    mu_alpha, sigma_alpha and the true county effects on the fit's choice set)."""
    world = world_or_panel if isinstance(world_or_panel, FittedWorld) else world_from_panel(world_or_panel)
    return table6(truth_world(world), county, rd_stock_mil, year, **kwargs)


# ---------------------------------------------------------------------------------------------
# Presentation
# ---------------------------------------------------------------------------------------------
def _cell(med: float, lo: float, hi: float, digits: int = 2) -> str:
    if not np.isfinite(med):
        return "n/a"
    return f"{med:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def format_table6(result: Table6Result) -> str:
    """Table 6 as text: percent increase in sales per mechanism, median [90% interval]."""
    table = result.summary()
    head = (
        f"Spillovers from a ${result.rd_stock_mil:g} million R&D stock entering {result.rows[0].name} in {result.year}: "
        f"percent increase in the aggregate sales of sample firms, posterior median [90% interval]\n"
        f"alpha: {'firm-level posterior alpha_i of the county firms' if result.alpha_mode == 'firm' else 'model-implied f(alpha | county)'}; "
        f"mechanisms: Dist. decay = entrant county's alpha distribution everywhere, Sorting = no decay with distance, Both = the model"
    )
    header = ["county", "km", "firms", *[MECHANISM_LABELS[m] + " %" for m in MECHANISMS]]
    if result.usd is not None:
        header.append("Both, $ million")
    lines = []
    for _, r in table.iterrows():
        cells = [str(r["county"]), f"{r['distance_km']:.0f}", str(r["firms"])]
        for m in MECHANISMS:
            cell = _cell(r[f"{m}_pct_median"], r[f"{m}_pct_q5"], r[f"{m}_pct_q95"])
            if f"{m}_pct_truth" in r and np.isfinite(r[f"{m}_pct_truth"]):
                cell += f" (truth {r[f'{m}_pct_truth']:.2f})"
            cells.append(cell)
        if result.usd is not None:
            cell = _cell(r["both_usd_mil_median"], r["both_usd_mil_q5"], r["both_usd_mil_q95"], 1)
            if "both_usd_mil_truth" in r and np.isfinite(r["both_usd_mil_truth"]):
                cell += f" (truth {r['both_usd_mil_truth']:.1f})"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]
    out = [head, "", "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
    out.append(f"({result.percent.shape[0]} {result.label} draws)")
    for note in result.notes:
        out.append(f"note: {note}")
    if result.truth is not None:
        inside, total = coverage([result])
        out.append(f"truth inside the 90% interval in {inside} of {total} distinct cells")
    return "\n".join(out)


def coverage(results: list[Table6Result]) -> tuple[int, int]:
    """(cells whose truth is inside the 90% interval, cells compared) over several results."""
    inside = total = 0
    for r in results:
        inside += int(r.covered().sum())
        total += int(r.comparable().sum())
    return inside, total
