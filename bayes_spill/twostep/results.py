"""The two-step estimator's results: point estimates, bootstrap draws and diagnostics
(``BaselineResult``), printed like the paper's Tables 3 and 5 and saved as JSON and CSV."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill.twostep.design import BETA_NAMES, BaselineSettings

SPEC2_PARAMETERS = (*BETA_NAMES, "halflife_km", "sigma_w", "mu_alpha", "sigma_alpha2", "sigma_alpha", "gamma")


SPEC1_PARAMETERS = tuple(f"spec1_{n}" for n in (*BETA_NAMES, "alpha", "halflife_km"))


BASELINE_FILE = "baseline.json"
BOOTSTRAP_FILE = "bootstrap.csv"


def percentile_interval(values, level: float) -> tuple[float, float]:
    """The bootstrap percentile interval of replicates at probability ``level``."""
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_se(values) -> float:
    """The bootstrap standard error: the replicates' standard deviation (ddof 1)."""
    return float(np.std(values, ddof=1))


@dataclass
class BaselineResult:
    """Point estimates, bootstrap draws and diagnostics of the two-step estimator."""

    estimates: dict
    bootstrap: pd.DataFrame
    n_obs: int
    n_firms: int
    firms_gmm: int
    firms_dropped_short: int
    firms_no_variation: int
    location_counties: int
    alpha_hat: np.ndarray
    s_variation: np.ndarray
    year_effect: np.ndarray  # v_t, one per year of ``years`` (0 in the first)
    years: np.ndarray
    gmm_profile: tuple[np.ndarray, np.ndarray]
    nls_profile: tuple[np.ndarray, np.ndarray] | None
    location_converged: bool
    wall_seconds: float
    settings: BaselineSettings
    source: str = ""
    truth: dict | None = None
    table4: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def draws(self) -> pd.DataFrame:
        ok = self.bootstrap
        if "error" in ok:
            ok = ok[ok["error"].isna()]
        return ok.drop(columns=[c for c in ok.columns if c == "error"])

    @property
    def failed_replicates(self) -> int:
        return int(self.bootstrap["error"].notna().sum()) if "error" in self.bootstrap else 0

    def se(self, name: str) -> float:
        d = self.draws
        return bootstrap_se(d[name]) if name in d and len(d) > 1 else float("nan")

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Bootstrap percentile interval."""
        d = self.draws
        if name not in d or len(d) < 2:
            return (float("nan"), float("nan"))
        return percentile_interval(d[name], level)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        rows = []
        truth = self.truth or {}
        names = [*SPEC2_PARAMETERS, *(SPEC1_PARAMETERS if "spec1_alpha" in self.estimates else ())]
        for name in names:
            est = self.estimates[name]
            se = self.se(name)
            lo, hi = self.interval(name, level)
            t = truth.get(name, np.nan)
            rows.append(
                {
                    "parameter": name,
                    "estimate": est,
                    "boot_se": se,
                    "t": est / se if se > 0 else np.nan,
                    f"lo{int(level * 100)}": lo,
                    f"hi{int(level * 100)}": hi,
                    "truth": t,
                    "covered": bool(lo <= t <= hi) if np.isfinite(t) and np.isfinite(lo) else None,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "estimates": self.estimates,
            "summary": json.loads(self.summary().to_json(orient="index")),
            "n_obs": self.n_obs,
            "n_firms": self.n_firms,
            "firms_gmm": self.firms_gmm,
            "firms_dropped_short": self.firms_dropped_short,
            "firms_no_variation": self.firms_no_variation,
            "location_counties": self.location_counties,
            "location_converged": self.location_converged,
            "bootstrap_replicates": int(len(self.draws)),
            "bootstrap_failed": self.failed_replicates,
            "year_effect": dict(zip(map(str, map(int, self.years)), map(float, self.year_effect))),
            "gmm_profile": {"halflife_km": self.gmm_profile[0], "objective": self.gmm_profile[1]},
            "wall_seconds": self.wall_seconds,
            "settings": asdict(self.settings),
            "truth": self.truth,
            "table4": json.loads(self.table4.to_json()) if self.table4 is not None else None,
            "notes": self.notes,
        }


# -- printing like the paper -----------------------------------------------------------------
def _cell(value: float, t: float | None = None, fmt: str = "{:.3f}") -> str:
    if value is None or not np.isfinite(value):
        return ""
    text = fmt.format(value)
    if t is not None and np.isfinite(t):
        text += f" ({t:.1f})"
    return text


LABEL = 40


def table3(result: BaselineResult) -> str:
    """Table 3: production function estimates, spec. (1) NLS FE and spec. (2) A-B GMM."""
    summ = result.summary()
    truth = result.truth or {}
    has1 = "spec1_alpha" in result.estimates

    def cell(name, fmt="{:.3f}"):
        if name not in summ.index:
            return ""
        return _cell(summ.loc[name, "estimate"], summ.loc[name, "t"], fmt)

    def truth_cell(name, fmt="{:>10.3f}"):
        value = truth.get(name)
        return fmt.format(value) if truth and value is not None and np.isfinite(value) else (" " * 10 if truth else "")

    lines = [f"{'':{LABEL}s}{'(1)':>18s}{'(2)':>18s}" + (f"{'truth':>10s}" if truth else "")]
    for label, name in (
        ("log K_it", "beta_k"),
        ("log L_it", "beta_l"),
        ("log R_it", "beta_r"),
        ("zero R&D dummy", "beta_zero_rd"),
    ):
        lines.append(
            f"{label:{LABEL}s}{cell('spec1_' + name) if has1 else '':>18s}{cell(name):>18s}" + truth_cell(name)
        )
    lines.append(f"{'S_it (one alpha, spec. 1)':{LABEL}s}{cell('spec1_alpha') if has1 else '':>18s}{'':>18s}")
    lines.append(
        f"{'Spillover half-life (log 2/lambda), km':{LABEL}s}"
        f"{cell('spec1_halflife_km', '{:,.0f}') if has1 else '':>18s}{cell('halflife_km', '{:,.0f}'):>18s}"
        + truth_cell("halflife_km", "{:>10,.0f}")
    )
    lines.append(
        f"{'sigma_w (Appendix 7.4)':{LABEL}s}{'':>18s}{_cell(result.estimates['sigma_w']):>18s}" + truth_cell("sigma_w")
    )
    lines.append(f"{'# of observations':{LABEL}s}{result.n_obs:>18,d}{result.n_obs:>18,d}")
    lines.append(f"{'# of firms (GMM: those with M_i != 0)':{LABEL}s}{result.n_firms:>18,d}{result.firms_gmm:>18,d}")
    return "\n".join(lines)


def table5(result: BaselineResult) -> str:
    summ = result.summary()
    truth = result.truth or {}
    lines = [f"{'':{LABEL}s}{'estimate':>18s}" + (f"{'truth':>10s}" if truth else "")]
    for label, name in (
        ("Attraction parameter, gamma", "gamma"),
        ("Distribution of alpha_i: mu_alpha", "mu_alpha"),
        ("                         sigma_alpha^2", "sigma_alpha2"),
    ):
        t_val = truth.get(name)
        lines.append(
            f"{label:{LABEL}s}{_cell(summ.loc[name, 'estimate'], summ.loc[name, 't']):>18s}"
            + (f"{t_val:>10.3f}" if truth and t_val is not None else "")
        )
    lines.append(f"{'# of firms':{LABEL}s}{result.n_firms:>18,d}")
    lines.append(f"{'# of counties (choice set)':{LABEL}s}{result.location_counties:>18,d}")
    return "\n".join(lines)


def report(result: BaselineResult) -> str:
    b = len(result.draws)
    tnote = (
        f"t-statistics in parentheses: estimate / bootstrap s.e. ({b} resamples of firms"
        + (f", {result.failed_replicates} failed" if result.failed_replicates else "")
        + ")"
        if b
        else "no bootstrap (point estimates only)"
    )
    summ = result.summary()
    interval_lines = summ[["estimate", "boot_se", "lo95", "hi95", "truth", "covered"]].to_string(
        float_format=lambda v: f"{v:.4g}"
    )
    parts = [
        f"Two-step estimator (Lychagin 2010, Section 4) on {result.source}: {result.n_firms} firms, {result.n_obs} firm-years",
        f"GMM: {result.firms_gmm} firms with M_i != 0; {result.firms_dropped_short} firms with T_i <= 2 drop out of this step; "
        f"{result.firms_no_variation} firms without variation in S have no alpha_hat",
        "",
        "Table 3: Production function estimates",
        tnote,
        "(1): one alpha for all firms, NLS with firm fixed effects; (2): heterogeneous alpha_i, A-B GMM",
        table3(result),
        "",
        "Table 4: Preliminary evidence on sorting by alpha_hat_i (regressor: Sbar at the firm's county)",
        result.table4.to_string(float_format=lambda v: f"{v:.4g}") if result.table4 is not None else "(not computed)",
        "",
        "Table 5: Parameters of the location choice problem (ML, county effects by the BLP contraction)",
        table5(result),
        "",
        "Bootstrap 95% percentile intervals" + (" and whether they hold the truth" if result.truth else ""),
        interval_lines,
    ]
    if not result.location_converged:
        parts.append("warning: the location ML optimiser reported no convergence")
    parts += [f"note: {n}" for n in result.notes]
    parts.append(f"wall time {result.wall_seconds:.1f} s")
    return "\n".join(parts)


def save_result(result: BaselineResult, out: str | Path) -> Path:
    """Write DIR/baseline.json and DIR/bootstrap.csv atomically."""
    from bayes_spill.inference.posterior_io import atomic_path

    out = Path(out)
    target = out / BASELINE_FILE
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(finite_or_none(result.to_json()), indent=1, default=_json_default, allow_nan=False))
    if len(result.bootstrap):
        with atomic_path(out / BOOTSTRAP_FILE) as tmp:
            result.bootstrap.to_csv(tmp, index=False)
    return target


def finite_or_none(value):
    """A JSON-ready copy: nan and infinities become null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return [finite_or_none(v) for v in value.tolist()]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
