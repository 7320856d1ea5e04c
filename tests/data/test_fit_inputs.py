"""fit(data=df) and a Stata .dta panel fit end to end: the tiny nutpie industry read three ways
(the shared fit of its CSV, tests/tiny_fits.py, then a DataFrame and a Stata file) gives the same
draws, and the two later fits sample the model the CSV's fit compiled (nutpie's compile is nearly
all of a tiny fit's time; this file is in the xdist unit of the default fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tiny_fits import NUTPIE_OPTIONS, NUTPIE_SEED, nutpie_fit, tiny_csv

import bayes_spill
from bayes_spill.data.files import write_table
from bayes_spill.inference.fitting import resolve_data


def test_fit_from_a_dataframe_and_from_a_stata_panel(tmp_path):
    from_csv = nutpie_fit(NUTPIE_SEED)  # compiles the model unless an earlier test of the unit did
    frame = pd.read_csv(tiny_csv(), dtype={"gvkey": str, "fips": str})
    # the same data from another format: the model compiled for the CSV (fitting.compiled_key);
    # other data would compile anew and draw apart
    options = dict(seed=NUTPIE_SEED, progress=False, report=False, **NUTPIE_OPTIONS)
    bayes_spill.fit(data=frame, out=tmp_path / "frame", **options)
    dta = write_table(frame, tmp_path / "panel.dta")
    bayes_spill.fit(data=dta, out=tmp_path / "dta", **options)
    from_frame, from_dta = bayes_spill.load(tmp_path / "frame").tree, bayes_spill.load(tmp_path / "dta").tree
    assert from_frame.attrs["data_source"] == "DataFrame" and from_dta.attrs["data_source"] == str(dta)
    config = bayes_spill.load(tmp_path / "frame").config
    assert from_frame.attrs["data_sha256"] == resolve_data(frame, config)[1]
    # the same data, configuration and seed give the same draws, whichever way the data came
    for tree in (from_frame, from_dta):
        np.testing.assert_array_equal(
            tree.posterior["halflife_km"].to_numpy(), from_csv.posterior["halflife_km"].to_numpy()
        )
    assert (from_frame.attrs["compiled_model_reused"], from_dta.attrs["compiled_model_reused"]) == (1, 1)
