"""The paper's published values and the notation constants, written once.

Lychagin (2010), "Spillovers, absorptive capacity and agglomeration": software firms (SIC 7372)
in Compustat, 1978-2006. Every module that prints, plots, simulates or benchmarks against the
paper reads its numbers from here; nothing in this module imports from the package, so any stage
may import it.

Notation: h = ln 2 / lambda is the spillover half-life in km (paper, Table 3: "log(2)/lambda");
gamma is the attraction of spillovers in the location choice (eq. 6); alpha_i ~ Normal(mu_alpha,
sigma_alpha^2) is absorptive capacity; beta_k, beta_l, beta_r are the production elasticities of
capital, labour and the R&D stock (eq. 7).
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)  # lambda = LN2 / h: the decay rate per km of a half-life h in km
LOG_2PI = math.log(2.0 * math.pi)  # the Gaussian log-density's constant

# -- Table 3, specification (2): heterogeneous alpha_i, Arellano-Bonhomme GMM ----------------------
HALFLIFE_KM = 59.0
BETA_K = 0.11
BETA_L = 0.66
BETA_R = 0.09
# -- Table 5: the location choice problem ------------------------------------------------------------
GAMMA = 0.053
MU_ALPHA = -0.05
SIGMA_ALPHA2 = 0.41
# -- the sample (Tables 2 and 5) -----------------------------------------------------------------------
FIRMS = 688
FIRM_YEARS = 4853  # Table 2 (Table 3 prints 4,852)
FIRST_YEAR = 1978
LAST_YEAR = 2006
SIC = 7372  # prepackaged software
MEAN_YEARS_PER_FIRM = 7.4  # Table 2: observations per firm, mean (sd 4.5, range 3-26)

# The estimates by parameter name, as the posterior and the two-step estimator name them.
PAPER_VALUES: dict[str, float] = {
    "halflife_km": HALFLIFE_KM,
    "gamma": GAMMA,
    "mu_alpha": MU_ALPHA,
    "sigma_alpha2": SIGMA_ALPHA2,
    "beta_k": BETA_K,
    "beta_l": BETA_L,
    "beta_r": BETA_R,
}
# Where each value is printed in the paper.
PAPER_TABLES: dict[str, str] = {
    "halflife_km": "Table 3, spec. (2)",
    "beta_k": "Table 3, spec. (2)",
    "beta_l": "Table 3, spec. (2)",
    "beta_r": "Table 3, spec. (2)",
    "gamma": "Table 5",
    "mu_alpha": "Table 5",
    "sigma_alpha2": "Table 5",
}

# -- Table 6: a $220 million R&D stock entering Santa Clara in 2002 --------------------------------
ENTRANT_COUNTY = "06085"  # Santa Clara, CA
ENTRANT_RD_STOCK_MIL = 220.0
ENTRANT_YEAR = 2002
SANTA_CLARA_SALES_2002_MIL = 7640.0  # software sales (Economic Census 2002)
# percent increase of the county's software sales, "both" mechanisms (decay and sorting) active
TABLE6_BOTH_PERCENT: dict[str, float] = {
    "06085": 1.49,  # Santa Clara
    "06087": 0.32,  # Santa Cruz
    "06081": 0.69,  # San Mateo
    "06001": 0.50,  # Alameda
    "06075": 0.25,  # San Francisco
}
