"""report.html and the county map, without a fit: the Markdown subset the report is written in
renders to a self-contained page, a section added to report.md appears in it, and the shipped
county polygons cover the built-in county table and are drawn one path per county."""

from __future__ import annotations

import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bayes_spill.checking import county_map, html  # noqa: E402
from bayes_spill.data.geography import load_counties  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    (tmp_path / "figures").mkdir()
    fig.savefig(tmp_path / "figures" / "line.png")
    return tmp_path


SAMPLE = """# Checks of the fit in `demo`

Model `m` on `data.csv` (data sha256 0123456789ab).

## Verdicts

- **Sampler.** OK: no problems.
- **Locations (PPC).** MISFIT in 1 of 6 statistics: a < b.
- **PSIS-LOO.** 9 of 60 firms have Pareto k above 0.7
  continued on a second line.

## Sampler

| chain | draws | note |
|---|---|---|
| 0 | 40 | a \\| b |
| 1 | 1.5e-3 | <b>not html</b> |

![rank plots](figures/line.png)

![gone](figures/missing.png)

```toml
name = "x" # <tag>
```
"""


def test_the_markdown_subset_renders_as_html(folder):
    page = html.render(SAMPLE, folder)
    assert page.startswith("<!DOCTYPE html>") and "<title>Checks of the fit in demo</title>" in page
    assert '<h2 id="verdicts">Verdicts</h2>' in page and '<a href="#sampler">Sampler</a>' in page
    assert '<li class="ok"><strong>Sampler.</strong> OK: no problems.</li>' in page
    assert '<li class="flag"><strong>Locations (PPC).</strong> MISFIT in' in page
    assert '<li class="note"><strong>PSIS-LOO.</strong> 9 of 60 firms have Pareto k above 0.7 continued' in page
    assert "<th>chain</th><th>draws</th><th>note</th>" in page
    assert '<td class="num">1.5e-3</td>' in page and "<td>a | b</td>" in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page and "<b>" not in page
    assert page.count('<img src="data:image/png;base64,') == 1
    assert '<p class="missing">Figure gone (figures/missing.png): not found.</p>' in page
    assert '<pre><code class="language-toml">name = &quot;x&quot; # &lt;tag&gt;</code></pre>' in page
    for leftover in ("**", "](", "|---", "```"):
        assert leftover not in page.split("<style>")[0] + page.split("</style>")[1], leftover
    assert html.external_references(page) == []


def test_a_section_added_to_the_markdown_appears_in_the_html(folder):
    # report.md is the one source: a section another part of the package appends to it (a prior-
    # sensitivity table, say) is rendered with no change to html.py
    extra = "\n## Prior sensitivity\n\nPower-scaling.\n\n| parameter | prior |\n|---|---|\n| gamma | 0.31 |\n"
    page = html.render(SAMPLE + extra, folder)
    assert '<h2 id="prior-sensitivity">Prior sensitivity</h2>' in page
    assert '<a href="#prior-sensitivity">Prior sensitivity</a>' in page
    assert '<td>gamma</td><td class="num">0.31</td>' in page


def test_links_keep_their_text_but_link_nowhere(folder):
    page = html.render("See [the docs](https://example.org/x) and `http://a.b`.\n", folder)
    assert "the docs (https://example.org/x)" in page and "href" not in page.split("</nav>")[-1]
    assert html.external_references(page) == []


def test_external_reference_finder_finds_them():
    for bad in ('<img src="figures/a.png">', '<a href="https://x.org">', "<script>", '<link rel="x">', "url(x)"):
        assert html.external_references(bad), bad
    assert html.external_references('<img src="data:image/png;base64,AAAA"><a href="#top">') == []


# -- county polygons ---------------------------------------------------------------------------
def test_every_built_in_county_has_a_polygon_or_is_a_known_exception():
    counties = load_counties()
    missing = set(county_map.missing_polygons(counties.fips))
    assert missing == set(county_map.KNOWN_WITHOUT_POLYGON), sorted(missing ^ county_map.KNOWN_WITHOUT_POLYGON)
    assert county_map.missing_polygons(["06085", "99999"]) == ["99999"]


def test_the_shapes_are_small_and_ship_with_the_wheel():
    path = REPO / "bayes_spill" / "data" / county_map.SHAPES_FILE
    assert path.stat().st_size < 2 * 1024 * 1024
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(path.match(p) for p in patterns["bayes_spill.data"])
    assert (REPO / "bayes_spill" / "data" / "county_shapes_notes.md").is_file()


def test_shapes_decode_to_plausible_polygons():
    shapes = county_map.load_shapes()
    where = shapes.position()
    santa_clara = shapes.polygons[where["06085"]]
    ring = santa_clara[0][0]
    assert ring.shape[1] == 2 and len(ring) > 20
    lon, lat = ring.mean(axis=0)
    assert -122.2 < lon < -121.2 and 36.9 < lat < 37.5  # Santa Clara County, CA
    # every polygon of the lower 48 lies in its box; the Aleutians cross 180 degrees
    for code, polygons in zip(shapes.fips.tolist(), shapes.polygons):
        xy = np.concatenate([r for p in polygons for r in p])
        if county_map.region_of(code) == "lower48":
            assert -125 < xy[:, 0].min() and xy[:, 0].max() < -66.9 and 24.4 < xy[:, 1].min(), code


def test_albers_projection():
    x, y = county_map.albers([-96.0], [23.0])
    np.testing.assert_allclose([x[0], y[0]], [0.0, 0.0], atol=1e-9)
    # equal area: a 1-degree cell at 40N has the same area at any longitude, ~ 111.2 * 85.3 km2
    cell = []
    for lon0 in (-120.0, -75.0):
        lon = np.array([lon0, lon0 + 1, lon0 + 1, lon0])
        lat = np.array([40.0, 40.0, 41.0, 41.0])
        px, py = county_map.albers(lon, lat)
        cell.append(0.5 * abs(np.dot(px, np.roll(py, 1)) - np.dot(py, np.roll(px, 1))))
    assert cell[0] == pytest.approx(cell[1], rel=1e-3) and cell[0] == pytest.approx(9370, rel=0.01)
    # the Aleutians east of 180 degrees stay beside the rest of Alaska
    east, _ = county_map.albers([179.5], [52.0], "alaska")
    west, _ = county_map.albers([-179.5], [52.0], "alaska")
    assert abs(east[0] - west[0]) < 100


def _values(counties, occupied_fips):
    occ = np.sort(counties.index_of(occupied_fips))
    rng = np.random.default_rng(1)
    return {
        "halflife_km": 59.0,
        "sbar": np.exp(rng.normal(size=len(counties))),
        "occupied": occ,
        "firms": rng.integers(1, 20, len(occ)),
        "alpha": rng.normal(size=len(occ)),
    }


def _data_paths(ax) -> int:
    """Paths of the coloured counties in an axes and its insets."""
    axes = [ax, *[c for c in ax.child_axes]]
    return sum(len(c.get_paths()) for a in axes for c in a.collections if c.get_gid() == "data")


def test_the_map_draws_one_polygon_path_per_county_with_data():
    from matplotlib.collections import PolyCollection

    counties = load_counties()
    occupied = ["06085", "06075", "25017", "36061", "02020", "15003", "51510"]  # incl. Alaska, Hawaii
    fig = county_map.county_map_figure(_values(counties, occupied), counties)
    rows = fig.axes[0].get_gridspec().nrows
    assert rows == 3  # firms, alpha, Sbar
    grid = [a for a in fig.axes if a.get_subplotspec() is not None]
    firms_main, sbar_main = grid[0], grid[6]
    assert all(isinstance(c, PolyCollection) for c in firms_main.collections)
    assert _data_paths(firms_main) == len(occupied)
    assert _data_paths(grid[3]) == len(occupied)  # alpha
    assert _data_paths(sbar_main) == len(counties)  # Sbar: every county
    # one path per county: a county of several polygons (Honolulu, its islands) is one compound path
    hawaii = [c for c in firms_main.child_axes[1].collections if c.get_gid() == "data"][0]
    assert len(hawaii.get_paths()) == 1
    assert (hawaii.get_paths()[0].codes == matplotlib.path.Path.MOVETO).sum() > 1
    # the colours are the county values
    firms = [c for c in firms_main.collections if c.get_gid() == "data"][0]
    assert len(firms.get_array()) == sum(county_map.region_of(f) == "lower48" for f in occupied)


def test_a_county_without_a_polygon_is_named_on_the_map():
    from dataclasses import replace

    counties = load_counties()
    fips = counties.fips.copy()
    fips[0] = "01999"  # not a county of the shapes
    odd = replace(counties, fips=fips)
    fig = county_map.county_map_figure(_values(odd, ["06085", "01999"]), odd)
    assert "1 counties of the table have no polygon and are not drawn: 01999" in fig.get_suptitle()
    assert _data_paths(fig.axes[0]) == 1
