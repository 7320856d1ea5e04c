"""Checks a fit runs on the built model before it samples: which parameters the panel cannot
inform (a degenerate panel: one firm, one county, no R&D variation, a spillover that does not
vary), and whether the draws asked for fit in memory.

A degenerate panel is not an error (a fit of it is valid, its posterior is the prior where the
data are silent), so it gets warnings that name the parameters; draws that cannot fit in memory
are an error before sampling, with the numbers.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from bayes_spill.config import ModelConfig
from bayes_spill.errors import ConfigError
from bayes_spill.model import integrated
from bayes_spill.model.likelihood import ModelData
from bayes_spill.spillover import kernel

# Half-lives (km) at which the spillover is compared: from within a county to across the country.
PROBE_HALFLIFES_KM = (5.0, 59.0, 500.0, 5000.0)
# Relative size under which a variation is none (rounding in sums of $ bil pools).
NO_VARIATION = 1e-10
# Per draw besides the model's values: nutpie's and PyMC's sample statistics (step size, depth,
# energy, divergence, ...), counted generously.
SAMPLE_STATS_PER_DRAW = 16
# Copies of the draws held at once at the peak: the sampler's trace, the DataTree assembled from
# it, and the buffers of the file being written.
TRACE_COPIES = 3


@dataclass(frozen=True)
class Degeneracy:
    """One way a panel is degenerate: what the data show and the parameters they cannot inform."""

    condition: str
    parameters: tuple[str, ...]
    consequence: str = "have their prior only"

    def message(self) -> str:
        return f"{self.condition}: {', '.join(self.parameters)} {self.consequence}"


def degenerate_panel(data: ModelData, config: ModelConfig) -> list[Degeneracy]:
    """The ways a panel cannot inform some of the model's parameters.

    Parameters
    ----------
    data : ModelData
        The numbers the likelihood reads (``model.likelihood.model_data``).
    config : ModelConfig
        The model: which parameters exist depends on it (one alpha or alpha_i, sorting or not).

    Returns
    -------
    list of Degeneracy
        Empty for a panel where every parameter meets the data. Checked: one firm; a location
        choice with one county; no R&D at all; no within-firm variation in the R&D stock or in
        the spillover a firm receives; a spillover that does not depend on the half-life;
        county spillovers that are the same in every county of the choice set.
    """
    panel, spec = data.panel, config.model
    location = spec.location_block
    sorting = location and spec.sorting
    alpha = ("alpha", "mu_alpha", "sigma_alpha") if location else ("alpha",)
    county = ("county_effect", "county_delta", "county_tau")
    found: list[Degeneracy] = []

    if location and panel.n_firms == 1:
        spread = ("sigma_alpha", *(("gamma",) if sorting else ()))
        found.append(
            Degeneracy(
                "the panel holds one firm",
                spread,
                "cannot be told from the prior (they describe differences between firms)",
            )
        )
    if location and len(data.spill.choice_set) == 1:
        found.append(
            Degeneracy("the location choice has one county to choose from", (*(("gamma",) if sorting else ()), *county))
        )

    if not np.any(panel.rd_stock > 0):
        found.append(
            Degeneracy(
                "no firm-year has an R&D stock",
                ("beta_r", "beta_zero_rd", *alpha, "halflife_km", *(("gamma",) if sorting else ())),
            )
        )
        return found  # every spillover is 0: the checks below would repeat this
    if not _varies_within_firms(data, data.inputs[:, 2]):
        found.append(
            Degeneracy("no firm's log R&D stock changes over its years", ("beta_r",), "is absorbed by the firm effects")
        )
    # The zero-R&D dummy is not checked: it changes within a firm only when the firm starts R&D,
    # which few panels show (the embedded default: no firm), so a warning would come with
    # nearly every fit; docs/outputs.md says what beta_zero_rd is then.

    received = [
        kernel.transform(kernel.firm_year_spillover(data.spill, h), spec.spillover, spec.log_floor_bil)
        for h in PROBE_HALFLIFES_KM
    ]
    offered = [
        kernel.transform(kernel.choice_spillover(data.spill, h), spec.spillover, spec.log_floor_bil)
        for h in PROBE_HALFLIFES_KM
    ]
    varies_in_production = any(_varies_within_firms(data, s) for s in received)
    sorting_informed = sorting and len(data.spill.choice_set) > 1 and any(_varies(s) for s in offered)
    via_location = "are informed only through the location choice" if sorting_informed else "have their prior only"
    if not varies_in_production:
        found.append(
            Degeneracy(
                "the spillover a firm receives does not change over its years", (*alpha, "halflife_km"), via_location
            )
        )
    elif not any(_differs(received[0], s) for s in received[1:]):
        halflife_via_location = sorting_informed and any(_differs(offered[0], s) for s in offered[1:])
        found.append(
            Degeneracy(
                "the spillover firms receive does not depend on distance (all R&D is in the firms' own counties)",
                ("halflife_km",),
                "is informed only through the location choice" if halflife_via_location else "has its prior only",
            )
        )
    if sorting and len(data.spill.choice_set) > 1 and not any(_varies(s) for s in offered):
        found.append(Degeneracy("the average spillover is the same in every county of the choice set", ("gamma",)))
    return found


def warn_degenerate_panel(data: ModelData, config: ModelConfig) -> list[Degeneracy]:
    """Print one warning line per degeneracy of the panel to stderr (``degenerate_panel``).

    Parameters
    ----------
    data : ModelData
        The numbers the likelihood reads.
    config : ModelConfig
        The model.

    Returns
    -------
    list of Degeneracy
        What was warned about.
    """
    found = degenerate_panel(data, config)
    for item in found:
        print(f"warning: {data.panel.source}: {item.message()}", file=sys.stderr, flush=True)
    return found


def _varies(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=float)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    return values.size > 1 and float(np.ptp(values)) > NO_VARIATION * max(scale, 1e-300)


def _varies_within_firms(data: ModelData, values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=float)
    within = integrated.within_firm(values, data.panel.obs_firm, data.years_per_firm)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    return bool(np.max(np.abs(within), initial=0.0) > NO_VARIATION * max(scale, 1e-300))


def _differs(a: np.ndarray, b: np.ndarray) -> bool:
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)), 1e-300)
    return bool(np.max(np.abs(a - b), initial=0.0) > NO_VARIATION * scale)


# -- memory --------------------------------------------------------------------------------------------
def values_per_draw(model, n_firms: int, config: ModelConfig) -> int:
    """How many numbers one draw of one chain stores: every value and deterministic of the
    model, the alpha_i drawn back after sampling an integrated model, and the sample statistics.

    Parameters
    ----------
    model : pymc.Model
        The built model.
    n_firms : int
        Firms of the panel.
    config : ModelConfig
        The model's configuration.

    Returns
    -------
    int
        Numbers (each stored as 8 bytes).
    """
    import pytensor

    count = sum(int(np.prod(shape)) for shape in model.eval_rv_shapes().values())
    unknown = [d for d in model.deterministics if any(n is None for n in d.type.shape)]
    known = [d for d in model.deterministics if d not in unknown]
    count += sum(int(np.prod(d.type.shape)) for d in known)
    if unknown:
        shapes = pytensor.function([], [d.shape for d in unknown], mode="FAST_COMPILE", on_unused_input="ignore")()
        count += sum(int(np.prod(shape)) for shape in shapes)
    if config.model.integrate_alpha:
        count += n_firms
    return count + SAMPLE_STATS_PER_DRAW


def available_memory_bytes() -> int | None:
    """Memory the system can give this process now (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def require_draws_fit_memory(model, n_firms: int, config: ModelConfig) -> int | None:
    """ConfigError, before sampling, when the draws asked for cannot be held in memory.

    Parameters
    ----------
    model : pymc.Model
        The built model.
    n_firms : int
        Firms of the panel.
    config : ModelConfig
        Its sampler settings give chains and draws.

    Returns
    -------
    int or None
        The most draws per chain that memory holds (None when the memory available is unknown).
        The error's message gives draws x chains x values per draw x 8 bytes, the memory
        available and that number.
    """
    available = available_memory_bytes()
    if available is None:
        return None
    s = config.sampler
    per_draw = values_per_draw(model, n_firms, config)
    most = available // (TRACE_COPIES * s.chains * per_draw * 8)
    if s.draws <= most:
        return most
    from bayes_spill.data.files import size_text

    needed = s.draws * s.chains * per_draw * 8
    raise ConfigError(
        f"{s.draws:,} draws x {s.chains} chains x {per_draw:,} values per draw x 8 bytes = {size_text(needed)} of draws, "
        f"held about {TRACE_COPIES} times while the fit is assembled and written, more than the {size_text(available)} "
        f"of memory available: use at most {most:,} draws with {s.chains} chains here"
    )


def before_sampling(model, data: ModelData, config: ModelConfig) -> ModelConfig:
    """What ``fit`` runs on a built model before sampling: warns about a degenerate panel
    (``warn_degenerate_panel``), stops when the draws cannot fit in memory
    (``require_draws_fit_memory``), and lowers the cap of sampling to an ESS target
    (``sampler.max_draws``) to the draws memory holds, with a note.

    Parameters
    ----------
    model : pymc.Model
        The built model.
    data : ModelData
        The numbers it reads.
    config : ModelConfig
        Its configuration.

    Returns
    -------
    ModelConfig
        The configuration to sample with.
    """
    most = require_draws_fit_memory(model, data.panel.n_firms, config)
    warn_degenerate_panel(data, config)
    s = config.sampler
    if s.ess and most is not None and most < s.max_draws:
        print(
            f"note: memory holds at most {most:,} draws per chain of this model with {s.chains} chains: sampling "
            f"to ESS {s.ess} stops there (sampler.max_draws {s.max_draws:,})",
            file=sys.stderr,
        )
        return config.with_sampler(max_draws=most)
    return config
