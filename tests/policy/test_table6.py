"""Table 6 (policy/table6.py, implied.py, world.py): the mechanics by hand, exact zero for a zero-size entrant, the
implied f(alpha | county), the CLI on a stand-in posterior, and (slow) the coverage of the truth
by the 90% intervals over small simulated industries fitted with NUTS."""

from __future__ import annotations

import numpy as np
import pytest

# Clusters in the Bay Area, so that the paper's example has firms to work on.
from policy_fixtures import BAY, PAPER_NEIGHBORS, fake_fit, small_panel  # noqa: F401

from bayes_spill.cli.main import main
from bayes_spill.errors import BayesSpillError, InputError
from bayes_spill.model.simulate import SimulationSettings, simulate_industry
from bayes_spill.policy.implied import implied_alpha_density, implied_cdf, implied_expectation
from bayes_spill.policy.table6 import (
    ALPHA_MODES,
    MECHANISMS,
    _field_rows,
    coverage,
    default_neighbors,
    format_table6,
    read_county_sales,
    table6,
    table6_truth,
)
from bayes_spill.policy.world import FittedWorld, load_world, world_from_panel


@pytest.fixture(scope="module")
def panel():
    return small_panel()


@pytest.fixture(scope="module")
def fit_dir(panel, tmp_path_factory):
    return fake_fit(panel, tmp_path_factory.mktemp("cf") / "fit")


@pytest.fixture(scope="module")
def world(fit_dir, panel):
    from bayes_spill.data.panel import PreparedPanel

    w = load_world(fit_dir)
    return FittedWorld(PreparedPanel(**{**w.panel.__dict__, "truth": dict(panel.truth)}), w.config, w.spill, w.draws)


def occupied_fips(world):
    return set(world.panel.counties.fips[world.panel.occupied].tolist())


def test_zero_size_entrant_gives_exactly_zero(world):
    for alpha in ("firm", "implied"):
        r = table6(world, "06085", 0.0, 2002, neighbors=PAPER_NEIGHBORS, alpha=alpha, county_sales={"06085": 7640.0})
        finite = np.isfinite(r.percent)
        assert finite.any()
        assert np.all(r.percent[finite] == 0.0), alpha
        assert r.usd[:, 0].tolist() == [0.0] * r.usd.shape[0]
        table = r.summary()
        assert (table.filter(like="_median").fillna(0.0) == 0.0).all().all()


def test_both_mechanism_by_hand(world):
    """The 'both' cell of every listed county equals sum_i sale_i expm1(alpha_i w R) / sum_i sale_i."""
    panel, draws = world.panel, world.draws
    r = table6(world, "06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS)
    for c, row in enumerate(r.rows):
        if row.firms == 0:
            assert np.all(np.isnan(r.percent[:, c, 1:]))
            continue
        county = panel.counties.index_of([row.fips])[0]
        obs = np.flatnonzero((panel.obs_county == county) & (panel.years[panel.obs_year] == row.year_used))
        w = np.exp(-np.log(2) / draws.halflife_km * row.distance_km)
        a = draws.alpha[:, panel.obs_firm[obs]]
        sale = panel.sale[obs]
        expected = 100 * (np.expm1(a * (w * 0.22)[:, None]) * sale).sum(axis=1) / sale.sum()
        np.testing.assert_allclose(r.percent[:, c, 2], expected, rtol=1e-12)
        no_decay = 100 * (np.expm1(a * 0.22) * sale).sum(axis=1) / sale.sum()
        np.testing.assert_allclose(r.percent[:, c, 1], no_decay, rtol=1e-12)


def test_entrant_row_is_the_same_under_every_mechanism(world):
    for alpha in ("firm", "implied"):
        r = table6(world, "06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS, alpha=alpha)
        row = r.percent[:, 0, :]
        np.testing.assert_allclose(row[:, 0], row[:, 2], rtol=1e-12)
        np.testing.assert_allclose(row[:, 1], row[:, 2], rtol=1e-12)
        assert r.rows[0].distance_km == 0.0


def test_decay_column_uses_the_entrant_county_firms(world):
    """Distance decay only: the entrant county's firms at the neighbour's distance."""
    panel, draws = world.panel, world.draws
    r = table6(world, "06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS)
    obs = np.flatnonzero(
        (panel.obs_county == panel.counties.index_of(["06085"])[0]) & (panel.years[panel.obs_year] == 2002)
    )
    a, sale = draws.alpha[:, panel.obs_firm[obs]], panel.sale[obs]
    for c, row in enumerate(r.rows):
        w = np.exp(-np.log(2) / draws.halflife_km * row.distance_km)
        expected = 100 * (np.expm1(a * (w * 0.22)[:, None]) * sale).sum(axis=1) / sale.sum()
        np.testing.assert_allclose(r.percent[:, c, 0], expected, rtol=1e-12)


def test_default_neighbors_are_occupied_counties_within_100_km(world):
    entrant = world.panel.counties.index_of(["06085"])[0]
    listed = default_neighbors(world, entrant)
    assert set(listed) <= occupied_fips(world)
    r = table6(world, "06085", 220.0, 2002)
    assert r.rows[0].fips == "06085"
    assert [row.fips for row in r.rows[1:]] == listed
    assert all(row.distance_km <= 100.0 for row in r.rows)
    assert [row.distance_km for row in r.rows] == sorted(row.distance_km for row in r.rows)


def test_county_without_firms_in_the_year_uses_an_earlier_year_and_says_so(world):
    panel = world.panel
    # a county whose firms are not all seen in the last panel year
    last = int(panel.years.max())
    for county in panel.occupied:
        years = panel.years[panel.obs_year[panel.obs_county == county]]
        if last not in years:
            fips = str(panel.counties.fips[county])
            break
    r = table6(world, fips, 100.0, last, neighbors=[])
    assert r.rows[0].year_used == int(years.max()) and r.rows[0].year_used != last
    assert any("no sample firm in" in n for n in r.notes)


def test_scipy_trapezoid_rules_give_the_hand_written_numbers():
    """implied.py and integrated.conditional_cdf integrate with scipy.integrate; the CDFs equal the
    hand-written cumulative rule they replaced bit for bit, the integrals to rounding."""
    from bayes_spill.model import integrated

    rng = np.random.default_rng(5)
    density = np.exp(3 * rng.normal(size=(4, 801)))
    grid = np.linspace(-7.9, 8.3, 801)
    cumulative = np.concatenate([np.zeros((4, 1)), np.cumsum(0.5 * (density[:, 1:] + density[:, :-1]), axis=1)], axis=1)
    assert np.array_equal(implied_cdf(grid, density), cumulative / cumulative[:, -1:])
    weights = np.zeros(801)
    weights[:-1] += np.diff(grid) / 2
    weights[1:] += np.diff(grid) / 2
    values = np.sin(grid)
    assert np.allclose(
        implied_expectation(grid, density, values), (density * values * weights).sum(axis=1), rtol=1e-13, atol=0
    )
    z = np.linspace(-8, 8, 161)
    a, sbar = rng.normal(size=5), rng.normal(size=5)
    _, log_f = integrated.conditional_log_density(0.1, 0.6, 0.3, a, sbar, np.array([0, 3]), z)
    f = np.exp(log_f - log_f.max(axis=1, keepdims=True))
    by_hand = np.concatenate([np.zeros((2, 1)), np.cumsum(0.5 * (f[:, 1:] + f[:, :-1]), axis=1)], axis=1)
    _, cdf = integrated.conditional_cdf(0.1, 0.6, 0.3, a, sbar, np.array([0, 3]), z)
    assert np.array_equal(cdf, by_hand / by_hand[:, -1:])


def test_implied_density_is_a_density_and_matches_gauss_hermite(world):
    from scipy.special import softmax

    d = 0
    draws = world.draws
    sbar = world.sbar()[d]
    pos = world.choice_position("06085")
    grid, dens = implied_alpha_density(
        draws.county_effect[d], draws.gamma[d], sbar, draws.mu_alpha[d], draws.sigma_alpha[d], [pos]
    )
    assert np.isclose(implied_expectation(grid, dens, 1.0)[0], 1.0)
    assert np.isclose(implied_cdf(grid, dens)[0, -1], 1.0)
    # E_f[expm1(alpha c)] against Gauss-Hermite: ∫ P_l(alpha) expm1(alpha c) N / ∫ P_l(alpha) N
    z, w = np.polynomial.hermite_e.hermegauss(80)
    nodes = draws.mu_alpha[d] + draws.sigma_alpha[d] * z
    p = softmax(draws.county_effect[d][None, :] + draws.gamma[d] * nodes[:, None] * sbar[None, :], axis=1)[:, pos]
    c = 0.5
    gh = (w * p * np.expm1(nodes * c)).sum() / (w * p).sum()
    ours = implied_expectation(grid, dens, np.expm1(grid * c)[None, :])[0]
    assert ours == pytest.approx(gh, rel=1e-6)


def test_sales_tilted_implied_expectation_matches_gauss_hermite(world):
    """With the sales weight exp(alpha S): ∫ P_l N e^(alpha S) expm1(alpha c) / ∫ P_l N e^(alpha S)."""
    from scipy.special import softmax

    draws, d = world.draws, 1
    sbar = world.sbar()[d]
    pos = world.choice_position("06085")
    s_field = 4.0  # a large field: the tilted mass sits far in the upper tail of Normal(mu, sigma)
    grid, dens = implied_alpha_density(
        draws.county_effect[d], draws.gamma[d], sbar, draws.mu_alpha[d], draws.sigma_alpha[d], [pos], tilt=[s_field]
    )
    assert grid.max() > draws.mu_alpha[d] + draws.sigma_alpha[d] ** 2 * s_field + 7 * draws.sigma_alpha[d]
    z, w = np.polynomial.hermite_e.hermegauss(120)
    nodes = draws.mu_alpha[d] + draws.sigma_alpha[d] * z
    p = softmax(draws.county_effect[d][None, :] + draws.gamma[d] * nodes[:, None] * sbar[None, :], axis=1)[:, pos]
    weight = w * p * np.exp(nodes * s_field)
    c = 0.22
    gh = (weight * np.expm1(nodes * c)).sum() / weight.sum()
    assert implied_expectation(grid, dens, np.expm1(grid * c)[None, :])[0] == pytest.approx(gh, rel=1e-6)


def test_implied_density_without_sorting_is_the_population_normal(world):
    L = len(world.choice_fips)
    grid, dens = implied_alpha_density(np.zeros(L), 0.0, np.ones(L), 0.3, 0.7, [0, 1])
    mean = implied_expectation(grid, dens, grid[None, :])
    np.testing.assert_allclose(mean, [0.3, 0.3], atol=1e-9)


def test_truth_cells_and_coverage_bookkeeping(world):
    post = table6(world, "06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS, county_sales={"06085": 7640.0})
    truth = table6_truth(world, "06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS, county_sales={"06085": 7640.0})
    assert truth.percent.shape == (1, len(post.rows), 3) and truth.label == "truth"
    both = post.with_truth(truth)
    table = both.summary()
    assert "both_pct_truth" in table and "both_usd_mil_truth" in table
    inside, total = coverage([both])
    mask = both.comparable()
    assert total == int(mask.sum()) and not mask[0, 0] and not mask[0, 1]
    assert 0 <= inside <= total
    text = format_table6(both)
    assert "truth" in text and "distinct cells" in text


def test_log_spillover_variant_by_hand(panel):
    world = world_from_panel(panel, "log_spillover")
    r = table6(world, "06085", 220.0, 2002, neighbors=[])
    zero = table6(world, "06085", 0.0, 2002, neighbors=[])
    assert np.all(zero.percent == 0.0)
    # one firm by hand: gain = alpha (log(S_it + R) - log(S_it)), S_it own stock excluded
    p = world.panel
    county = p.counties.index_of(["06085"])[0]
    obs = np.flatnonzero((p.obs_county == county) & (p.years[p.obs_year] == 2002))
    field = _field_rows(world, np.array([county]), int(np.flatnonzero(p.years == 2002)[0]), world.draws.halflife_km)[
        0, 0
    ]
    s_it = np.maximum(field - p.rd_stock[obs] / 1000.0, 0.001)
    gain = world.draws.alpha[0, p.obs_firm[obs]] * (np.log(s_it + 0.22) - np.log(s_it))
    expected = 100 * (np.expm1(gain) * p.sale[obs]).sum() / p.sale[obs].sum()
    assert r.percent[0, 0, 2] == pytest.approx(expected, rel=1e-10)


def test_bad_inputs_are_clear_errors(world, tmp_path):
    with pytest.raises(BayesSpillError, match="unknown county"):
        table6(world, "99999", 220.0, 2002)
    with pytest.raises(BayesSpillError, match="non-negative"):
        table6(world, "06085", -1.0, 2002)
    bad = tmp_path / "sales.csv"
    bad.write_text("fips,sales\n6085,7640\n")
    with pytest.raises(InputError, match="5-digit"):
        read_county_sales(bad)
    bad.write_text("fips,revenue\n06085,7640\n")
    with pytest.raises(InputError, match="sales"):
        read_county_sales(bad)


def test_fit_counterfactual_is_table6_of_its_world(fit_dir):
    """Fit.counterfactual thins the draws as the command line does and gives table6's cells; a Fit
    (all its draws) is accepted where a world is."""
    import bayes_spill

    fit = bayes_spill.load(fit_dir)
    ours = fit.counterfactual("06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS, n_draws=10)
    direct = table6(load_world(fit_dir, max_draws=10), "06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS)
    np.testing.assert_array_equal(ours.percent, direct.percent)
    assert ours.percent.shape[0] == 10 and ours.truth is None  # a stand-in fit: no embedded truth
    every = table6(fit, "06085", 220.0, 2002, neighbors=PAPER_NEIGHBORS)
    assert every.percent.shape[0] == fit.draws.n_draws


def test_cli_paper_example_in_one_command(fit_dir, panel, tmp_path, capsys):
    import json

    import pandas as pd

    sales = tmp_path / "sales.csv"
    sales.write_text("fips,sales\n06085,7640\n06081,2400\n06001,2600\n06075,1500\n06087,120\n")
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(dict(panel.truth)))
    out = tmp_path / "table6.csv"
    code = main(
        [
            "counterfactual",
            str(fit_dir),
            "--county",
            "06085",
            "--rd-stock",
            "220",
            "--year",
            "2002",
            "--neighbors",
            ",".join(PAPER_NEIGHBORS),
            "--county-sales",
            str(sales),
            "--truth",
            str(truth),
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Santa Clara" in text and "San Mateo" in text and "truth" in text
    table = pd.read_csv(out, dtype={"fips": str})
    assert table["fips"].tolist() == ["06085", *PAPER_NEIGHBORS]
    for m in MECHANISMS:
        assert {f"{m}_pct_median", f"{m}_pct_q5", f"{m}_pct_q95", f"{m}_pct_truth"} <= set(table.columns)
    assert "both_usd_mil_median" in table

    code = main(
        [
            "counterfactual",
            str(fit_dir),
            "--county",
            "06085",
            "--rd-stock",
            "0",
            "--year",
            "2002",
            "--alpha",
            "implied",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert (table.filter(like="_pct_").fillna(0.0) == 0.0).all().all()


def test_cli_reports_bad_county_as_exit_2(fit_dir, capsys):
    code = main(["counterfactual", str(fit_dir), "--county", "99999", "--rd-stock", "220", "--year", "2002"])
    assert code == 2
    assert "unknown county" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Slow: coverage of the truth by the 90% intervals on small simulated industries (real NUTS fits)
# ---------------------------------------------------------------------------------------------
COVERAGE_SEEDS = (1, 2, 3)


@pytest.mark.slow
def test_table6_intervals_cover_the_truth_at_about_the_nominal_rate():
    import bayes_spill

    results, lines = [], []
    for seed in COVERAGE_SEEDS:
        panel = simulate_industry(
            SimulationSettings(n_firms=120, first_year=1994, last_year=2004, county_shift=BAY), seed=seed
        )
        tree = bayes_spill.fit(data=panel, draws=100, tune=100, chains=2, seed=seed, progress=False, report=False)
        world = load_world(tree)
        world = FittedWorld(
            type(world.panel)(**{**world.panel.__dict__, "truth": dict(panel.truth)}),
            world.config,
            world.spill,
            world.draws,
        )
        for alpha in ALPHA_MODES:
            post = table6(world, "06085", 220.0, 2002, alpha=alpha)
            result = post.with_truth(table6_truth(world, "06085", 220.0, 2002, alpha=alpha))
            results.append(result)
            inside, total = coverage([result])
            lines.append(f"seed {seed} alpha={alpha}: {inside}/{total}\n{format_table6(result)}")
    inside, total = coverage(results)
    report = "\n\n".join(lines) + f"\n\noverall: {inside}/{total} = {inside / total:.2f}"
    print(report)
    assert total >= 20, report
    # 90% intervals; cells within a dataset are strongly correlated, so allow a wide band.
    assert 0.7 <= inside / total <= 1.0, report
