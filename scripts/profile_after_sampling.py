"""CPU seconds of the three steps a fit runs after sampling, on a finished fit of the embedded
default (the default model), in one process: summary.csv's table, the alpha_i draws of an
integrated fit, and the log_likelihood group. Checks that the alpha draws and the log-likelihood
recomputed equal those in the file.

    bayes-spill fit --out /tmp/default_fit
    python scripts/profile_after_sampling.py /tmp/default_fit
"""

import sys
import time
import warnings

import numpy as np
import xarray as xr

from bayes_spill.inference import alpha_draws, assembly, fitting, summary
from bayes_spill.model.likelihood import FIRM_LOGLIK, model_data


def main(fit_dir: str) -> None:
    warnings.simplefilter("ignore")
    tree = xr.open_datatree(f"{fit_dir}/posterior.nc").load()
    config, panel, _ = fitting.resolve_model_and_data(None, None)
    data = model_data(panel, config)
    _ = (data.halflife_table, data.field_table)  # built on first use, as in the fit
    post = tree["posterior"].to_dataset()
    seconds = {}

    start = time.process_time()
    summary.summary_table(tree, all_parameters=True)
    seconds["summary.csv table"] = time.process_time() - start

    start = time.process_time()
    drawn = alpha_draws.with_alpha_draws(post.drop_vars("alpha"), data, config.model, config.sampler.seed)
    seconds["alpha_i draws"] = time.process_time() - start

    start = time.process_time()
    loglik = assembly.log_likelihood(post, tree["log_likelihood"][FIRM_LOGLIK], data, config)
    seconds["log_likelihood group"] = time.process_time() - start

    same = np.array_equal(drawn["alpha"].values, post["alpha"].values) and all(
        np.array_equal(loglik[name].values, tree["log_likelihood"][name].values) for name in loglik.data_vars
    )
    for step, cpu in seconds.items():
        print(f"{step}: {cpu:.2f} s CPU")
    print(f"total {sum(seconds.values()):.2f} s CPU; alpha and log-likelihood equal to the file: {same}")


if __name__ == "__main__":
    main(sys.argv[1])
