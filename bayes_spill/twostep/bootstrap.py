"""Both steps of the two-step estimator once (``estimate``), and its bootstrap over firms: firms
resampled with replacement as integer weights, every replicate re-running both steps in a
process pool."""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bayes_spill.twostep.design import BETA_NAMES, BaselineSettings, Design, location_spillover
from bayes_spill.twostep.gmm import gmm, nls_spec1, sigma_w2
from bayes_spill.twostep.location import location_data, location_ml


# -- the whole estimator ---------------------------------------------------------------------
def estimate(
    d: Design,
    settings: BaselineSettings,
    weights: np.ndarray | None = None,
    alpha_hat: tuple[np.ndarray, np.ndarray] | None = None,
    start: tuple[float, float, float] | None = None,
    gmm_result: tuple | None = None,
) -> dict:
    """Both steps (and spec. 1) once: a flat dict of estimates plus diagnostics.

    alpha_hat: (alpha_hat, s_variation) to use instead of the projection's by-product (the point
    estimate passes table4.naive_alpha_hat here; both are eq. 11 and agree).
    """
    fit, grid, values = gmm_result if gmm_result is not None else gmm(d, settings, weights)
    s2 = sigma_w2(fit, weights)
    ah, s_var = alpha_hat if alpha_hat is not None else (fit.alpha_hat, fit.s_variation)
    sbar = location_spillover(d, fit.halflife_km)
    ld = location_data(ah, s_var, s2, d.firm_choice, sbar, weights)
    loc = location_ml(ld, settings, start)
    beta = np.where(fit.identified[:4], fit.beta, np.nan)
    out = {
        **dict(zip(BETA_NAMES, map(float, beta))),
        "halflife_km": fit.halflife_km,
        "sigma_w": math.sqrt(s2),
        "sigma_w2": s2,
        "mu_alpha": loc.mu_alpha,
        "sigma_alpha2": loc.sigma_alpha**2,
        "sigma_alpha": loc.sigma_alpha,
        "gamma": loc.gamma,
        "_gmm": fit,
        "_gmm_profile": (grid, values),
        "_location": loc,
        "_location_counties": int(len(ld.sbar)),
    }
    if settings.spec1:
        nls, ngrid, nvalues = nls_spec1(d, settings, weights)
        out.update(
            {
                f"spec1_{n}": float(b) if ok else float("nan")
                for n, b, ok in zip(BETA_NAMES, nls.beta, fit.identified[:4])
            }
        )
        out["spec1_alpha"] = nls.alpha
        out["spec1_halflife_km"] = nls.halflife_km
        out["_nls_profile"] = (ngrid, nvalues)
    return out


def public_estimates(estimates: dict) -> dict:
    return {k: v for k, v in estimates.items() if not k.startswith("_")}


# bootstrap replicates run in worker processes; the design is sent once per worker
_WORKER: dict = {}


def _init_worker(d: Design, settings: BaselineSettings, start) -> None:
    _WORKER.update(design=d, settings=settings, start=start)


def _replicate(seed_entropy) -> dict:
    d, settings, start = _WORKER["design"], _WORKER["settings"], _WORKER["start"]
    rng = np.random.default_rng(seed_entropy)
    weights = np.bincount(rng.integers(0, d.n_firms, d.n_firms), minlength=d.n_firms).astype(float)
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend
            return public_estimates(estimate(d, settings, weights, start=start))
    except Exception as exc:  # a failed replicate is reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}


def bootstrap(d: Design, settings: BaselineSettings, start=None, progress: bool = False) -> pd.DataFrame:
    """settings.n_bootstrap replicates of the whole estimator on firms resampled with replacement."""
    seeds = np.random.SeedSequence(settings.seed).spawn(settings.n_bootstrap)
    workers = settings.workers if settings.workers is not None else min(4, os.cpu_count() or 1)
    rows: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(seeds), desc="bootstrap", unit="resample")
    if workers <= 1:
        _init_worker(d, settings, start)
        for s in seeds:
            rows.append(_replicate(s))
            if bar:
                bar.update()
    else:
        # spawned (not forked) workers: no inherited sampler or BLAS threads; a script that calls
        # this needs the usual `if __name__ == "__main__":` guard
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(d, settings, start)
        ) as pool:
            for row in pool.map(_replicate, seeds, chunksize=max(1, len(seeds) // (8 * workers))):
                rows.append(row)
                if bar:
                    bar.update()
    if bar:
        bar.close()
    return pd.DataFrame(rows)
