"""fit(data=df) and a Stata .dta panel fit end to end: tiny data, one short chain each (most of
the time is building and compiling the model, once for both, not sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tiny_fits import tiny_config, tiny_csv

import bayes_spill
from bayes_spill.data.files import write_table
from bayes_spill.inference.fitting import resolve_data

N_FIRMS = 15


def test_fit_from_a_dataframe_and_from_a_stata_panel(tmp_path):
    frame = pd.read_csv(tiny_csv(), dtype={"gvkey": str, "fips": str})
    frame = frame[frame["gvkey"].isin(sorted(frame["gvkey"].unique())[:N_FIRMS])].reset_index(drop=True)
    # nutpie: the second fit reads the same data from another format, so it samples the model the
    # first compiled (fitting.compiled_key); a different panel would compile anew and draw apart
    config = tiny_config().with_sampler(backend="nutpie", draws=10, tune=10, chains=1)
    bayes_spill.fit(data=frame, model=config, out=tmp_path / "frame", progress=False, report=False)
    dta = write_table(frame, tmp_path / "panel.dta")
    bayes_spill.fit(data=dta, model=config, out=tmp_path / "dta", progress=False, report=False)
    from_frame, from_dta = bayes_spill.load(tmp_path / "frame").tree, bayes_spill.load(tmp_path / "dta").tree
    assert from_frame.attrs["data_source"] == "DataFrame" and from_dta.attrs["data_source"] == str(dta)
    assert from_frame.attrs["data_sha256"] == resolve_data(frame, config)[1]
    # the same data, configuration and seed give the same draws, whichever way the data came
    np.testing.assert_array_equal(
        from_frame.posterior["halflife_km"].to_numpy(), from_dta.posterior["halflife_km"].to_numpy()
    )
    assert (from_frame.attrs["compiled_model_reused"], from_dta.attrs["compiled_model_reused"]) == (0, 1)
