"""Figures of `bayes-spill check`: every PNG is written, linked from report.md and embedded in
report.html (which renders in headless Chromium: a slow test), the provenance is reported, and the
numbers behind the decay curve and the county map are right."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from tiny_fits import fit_copy  # noqa: E402

import bayes_spill  # noqa: E402
from bayes_spill.checking import figures  # noqa: E402
from bayes_spill.twostep.table4 import spillover_at_firm_county  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
EXPECTED = (
    "rank",
    "trace",
    "halflife_gamma",
    "decay_curve",
    "prior_posterior",  # checking/sensitivity.py, in report.md's identification section
    "ppc_statistics",
    "ppc_log_sales",
    "absorptive_capacity_vs_spillover",
    "county_map",
)


@pytest.fixture(scope="module")
def checked_and_parses(tmp_path_factory):
    """One full check (figures included) of a copy of the tiny fit, counting how often it parsed
    the fit's configuration and rebuilt its panel."""
    from bayes_spill.checking.report import check
    from bayes_spill.inference import posterior_io

    calls = {"config_from_tree": 0, "panel_from_tree": 0}

    def counted(name):
        real = getattr(posterior_io, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    fit_dir = fit_copy("lychagin2010", tmp_path_factory.mktemp("figs") / "fit")
    with pytest.MonkeyPatch.context() as mp:
        for name in calls:
            mp.setattr(posterior_io, name, counted(name))
        report = check(fit_dir, n_draws=16, n_bootstrap=0)
    return fit_dir, report, calls


@pytest.fixture(scope="module")
def checked(checked_and_parses):
    fit_dir, report, _ = checked_and_parses
    return fit_dir, report


def test_one_check_parses_the_configuration_and_rebuilds_the_panel_once(checked_and_parses):
    _, _, calls = checked_and_parses
    assert calls == {"config_from_tree": 1, "panel_from_tree": 1}


def test_every_figure_is_a_png_linked_from_the_report(checked):
    fit_dir, report = checked
    assert set(report.figures) == set(EXPECTED)
    text = (fit_dir / "report.md").read_text()
    for name in EXPECTED:
        path = fit_dir / "figures" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG, name
        assert path.stat().st_size > 5_000, name  # a drawn figure, not an empty canvas
        assert f"](figures/{name}.png)" in text


def test_report_html_embeds_every_figure_and_references_nothing_outside(checked):
    from bayes_spill.checking.html import external_references

    fit_dir, report = checked
    assert report.html_path == fit_dir / "report.html"
    page = report.html_path.read_text(encoding="utf-8")
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(EXPECTED)
    for encoded, name in zip(images, EXPECTED):  # the figures in report.md's order, byte for byte
        assert base64.b64decode(encoded) == (fit_dir / "figures" / f"{name}.png").read_bytes(), name
    assert external_references(page) == []
    # every section of report.md is in the page, the verdicts first
    sections = re.findall(r"^## (.+)$", (fit_dir / "report.md").read_text(), flags=re.MULTILINE)
    headings = re.findall(r"<h2 id=\"[^\"]+\">(.+?)</h2>", page)
    assert headings == [h.replace("`", "") for h in sections] and headings[0] == "Verdicts"


def test_report_states_the_provenance(checked):
    fit_dir, report = checked
    attrs = bayes_spill.load(fit_dir).tree.attrs
    text = (fit_dir / "report.md").read_text()
    page = report.html_path.read_text(encoding="utf-8")
    assert "## Provenance" in text and '<h2 id="provenance">Provenance</h2>' in page
    versions = json.loads(attrs["versions"])
    for doc in (text, page):
        assert attrs["data_sha256"] in doc and attrs["model_config_hash"] in doc
        assert str(attrs["run_id"]) in doc
        assert "pymc" in doc and versions["pymc"] in doc
    assert attrs["model_config"].strip() in text  # the configuration, verbatim
    assert "[priors]" in page and 'class="language-toml"' in page


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(checked, tmp_path):
    """Every figure of report.html decodes in a real browser (naturalWidth > 0), and a screenshot
    of the page is drawn. A probe script is added to a copy of the page; the report itself has none."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    _, report = checked
    page = report.html_path.read_text(encoding="utf-8")
    probe = (
        "<script>window.addEventListener('load', () => { const i = [...document.images];"
        "document.body.setAttribute('data-rendered', i.filter(x => x.complete && x.naturalWidth > 0).length + '/' + i.length);"
        "});</script>"
    )
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    assert f'data-rendered="{len(EXPECTED)}/{len(EXPECTED)}"' in dom, dom[:500]
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,3000", report.html_path.as_uri()],
        capture_output=True,
        timeout=180,
    )
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1200, 3000)
        colours = im.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 1000  # figures drawn, not a blank page


def test_decay_bands():
    d = np.array([0.0, 59.0, 118.0])
    bands = figures.decay_bands(np.full(100, 59.0), d)
    np.testing.assert_allclose(bands[:, 0], 1.0)
    np.testing.assert_allclose(bands[:, 1], 0.5)
    np.testing.assert_allclose(bands[:, 2], 0.25)
    spread = figures.decay_bands(np.array([20.0, 59.0, 200.0]), d, probs=(0.0, 0.5, 1.0))
    assert spread[0, 1] == pytest.approx(np.exp(-np.log(2) * 59 / 20)) and spread[2, 1] == pytest.approx(
        np.exp(-np.log(2) * 59 / 200)
    )


def test_county_values_match_firm_level_numbers(checked):
    fit_dir, _ = checked
    fit = bayes_spill.load(fit_dir)
    tree, panel = fit.tree, fit.panel
    values = figures.county_values(fit)
    h = values["halflife_km"]
    s_firm = spillover_at_firm_county(panel, h)
    np.testing.assert_allclose(values["sbar"][panel.firm_county], s_firm, rtol=1e-10)
    alpha_mean = tree["posterior"]["alpha"].mean(("chain", "draw")).values
    for pos, county in enumerate(values["occupied"][:5]):
        in_county = panel.firm_county == county
        assert values["firms"][pos] == in_county.sum()
        assert values["alpha"][pos] == pytest.approx(alpha_mean[in_county].mean())
    assert len(values["sbar"]) == len(panel.counties)


def test_no_alpha_figures_for_a_homogeneous_alpha():
    post = xr.Dataset({"alpha": (("chain", "draw"), np.zeros((2, 5)))})
    tree = xr.DataTree.from_dict({"/posterior": post})
    assert figures._alpha_summary(tree) is None


def test_truth_parameters_are_read_from_the_attrs():
    tree = xr.DataTree()
    assert figures.truth_parameters(tree) == {}
    tree.attrs["truth_parameters"] = repr({"gamma": 0.053, "halflife_km": 59.0})
    assert figures.truth_parameters(tree)["halflife_km"] == 59.0


def test_crafted_truth_attribute_cannot_crash_the_figures():
    import xarray as xr

    from bayes_spill.checking.figures import truth_parameters

    tree = xr.DataTree()
    tree.attrs["truth_parameters"] = "1" + "+1" * 100000
    assert truth_parameters(tree) == {}
