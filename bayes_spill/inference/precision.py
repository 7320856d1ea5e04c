"""Sampling to a precision: continue the same nutpie chains until the key parameters are known well enough.

With ``[sampler] ess = N`` (or ``bayes-spill fit --ess N``), nutpie tunes once and then samples
up to ``max_draws`` per chain in the background. Whenever every chain has reached the next
checkpoint of ``B`` draws, the first ``B`` draws of every chain are checked: when every key
parameter (``model.likelihood.KEY_PARAMETERS``) has bulk and tail ESS >= N and rank R-hat <= 1.01,
sampling stops and those ``B`` draws are kept; otherwise the next checkpoint is projected from the
ESS per draw seen so far. The chains are never restarted, so adaptation happens once.

The decision reads only the first ``B`` draws of each chain, which depend on the seed and not on
how far the chains ran ahead while the check was computed: the same data, configuration and seed
give the same draws, and a run that stopped at ``B`` draws holds exactly the draws of a
fixed-draws run of ``B`` draws with the same seed (tests/inference/test_precision.py).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bayes_spill.inference.summary import RHAT_LIMIT
from bayes_spill.model.likelihood import KEY_PARAMETERS

# Each checkpoint projects the draws the target needs from the ESS per draw so far, with a margin
# because ESS estimates from a short run are noisy; it grows at least by MIN_GROWTH so a run
# whose estimate hovers just below the target does not check every few draws.
MARGIN = 1.1
MIN_GROWTH = 1.25
POLL_SECONDS = 0.2
# What the posterior's attrs say stopped sampling.
RULE_DRAWS = "draws"  # a fixed number of draws (sampler.ess = 0, or --draws)
RULE_ESS = "ess"  # the ESS and R-hat target was reached
RULE_MAX_DRAWS = "max_draws"  # the cap was reached first: the attrs say what was reached


@dataclass(frozen=True)
class Reached:
    """The worst of the key parameters after ``draws`` draws per chain."""

    draws: int
    ess_bulk: float
    ess_tail: float
    rhat: float

    def meets(self, target: int) -> bool:
        """Bulk and tail ESS at least ``target`` and R-hat at most RHAT_LIMIT (NaN fails)."""
        return bool(self.ess_bulk >= target and self.ess_tail >= target and self.rhat <= RHAT_LIMIT)

    def attrs(self, rule: str, target: int, checks: int) -> dict:
        """What the posterior's attrs record about the stopping rule."""
        return {
            "stopping_rule": rule,
            "ess_target": int(target),
            "ess_bulk_min": float(self.ess_bulk),
            "ess_tail_min": float(self.ess_tail),
            "ess_reached_min": float(min(self.ess_bulk, self.ess_tail)),
            "rhat_max": float(self.rhat),
            "draws_per_chain": int(self.draws),
            "ess_checks": int(checks),
        }


def key_names(posterior: xr.Dataset) -> list[str]:
    """The key parameters this model's posterior has (the homogeneous model has no mu_alpha, ...)."""
    return [name for name in KEY_PARAMETERS if name in posterior.data_vars]


def diagnostics(posterior: xr.Dataset, names: list[str] | None = None) -> Reached:
    """Smallest bulk and tail ESS and largest rank R-hat over the key parameters.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with ``chain`` and ``draw`` dimensions.
    names : list of str, optional
        The parameters to check; default ``key_names(posterior)``.

    Returns
    -------
    Reached
        The worst values (NaN counts as not reached) and the draws per chain.
    """
    import arviz_stats as azs

    ds = posterior[names or key_names(posterior)]

    def worst(values: xr.Dataset, pick) -> float:
        flat = np.concatenate([np.ravel(values[name].values) for name in values.data_vars])
        return float("nan") if np.isnan(flat).any() else float(pick(flat))

    return Reached(
        draws=int(posterior.sizes["draw"]),
        ess_bulk=worst(azs.ess(ds, method="bulk"), np.min),
        ess_tail=worst(azs.ess(ds, method="tail"), np.min),
        rhat=worst(azs.rhat(ds), np.max),
    )


def next_checkpoint(reached: Reached, target: int, max_draws: int) -> int:
    """The draws per chain at which to check again: projected from the ESS per draw so far."""
    least = min(reached.ess_bulk, reached.ess_tail)
    growth = MIN_GROWTH
    if math.isfinite(least) and least > 0:
        growth = max(growth, target / least * MARGIN)
    elif not math.isfinite(least):
        growth = 2.0
    return min(max_draws, math.ceil(round(reached.draws * growth, 6)))  # 440.00000000000006 is 440


def first_draws(tree: xr.DataTree, draws: int) -> xr.DataTree:
    """The posterior and sample_stats of the first ``draws`` draws of every chain (attrs kept)."""
    groups = {
        name: tree[name].to_dataset().isel(draw=slice(0, draws))
        for name in ("posterior", "sample_stats")
        if name in tree.children
    }
    out = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    for name in groups:
        out[name].attrs.update(tree[name].attrs)
    return out


def draws_per_chain(tree: xr.DataTree) -> np.ndarray:
    """Draws each chain holds: nutpie pads the shorter chains of a running sampler with NaN."""
    logp = tree["sample_stats"]["logp"].values
    return np.sum(~np.isnan(logp), axis=1)


class DrawCounter:
    """nutpie's progress callback: the latest draw count (tuning included) of every chain, and
    when the last chain finished tuning (``time.perf_counter()``; None before)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: list[int] = []
        self.tuned_at: float | None = None

    def __call__(self, progress) -> None:
        with self._lock:
            self._counts = [int(p.finished_draws) for p in progress]
            if self.tuned_at is None and progress and all(p.started and not p.tuning for p in progress):
                self.tuned_at = time.perf_counter()

    def least(self) -> int:
        with self._lock:
            return min(self._counts) if self._counts else 0


def _finished(sampler) -> bool:
    """Whether the sampler has stopped (run to its end, or failed): nutpie answers TimeoutError
    while a chain holds the lock it asks for, which means it is running."""
    try:
        return bool(sampler.is_finished)
    except TimeoutError:
        return False


def sample_until(sampler, counter: DrawCounter, tune: int, first: int, target: int, max_draws: int, report=print):
    """Wait on a background nutpie sampler until the target is reached at a checkpoint, or max_draws.

    Parameters
    ----------
    sampler : nutpie's background sampler
        Started with ``draws=max_draws``, ``tune=tune``, ``save_warmup=False``, ``counter`` as
        its ``progress_callback`` and as many cores as chains: nutpie starts the chains beyond
        ``cores`` only when the first ones have finished, and every checkpoint needs them all.
    counter : DrawCounter
        Its progress callback.
    tune, first, target, max_draws : int
        Tuning steps per chain, the first checkpoint (draws per chain), the ESS target and the cap.
    report : callable, optional
        Called with one line per checkpoint.

    Returns
    -------
    (xarray.DataTree, dict)
        The first ``B`` draws of every chain at the checkpoint that stopped sampling, and the
        attrs that say so (``Reached.attrs``). The sampler is stopped.
    """
    checkpoint, checks, finished = first, 0, None
    while True:
        if finished is None and (checkpoint >= max_draws or _finished(sampler)):
            finished = sampler.wait()  # every chain runs to the cap
        if finished is not None:
            tree = finished
        else:
            while counter.least() - tune < checkpoint and not _finished(sampler):
                time.sleep(POLL_SECONDS)
            if _finished(sampler):
                continue
            tree = sampler.inspect()
            if draws_per_chain(tree).min() < checkpoint:
                time.sleep(POLL_SECONDS)  # the trace lags the progress callback by a few draws
                continue
        kept = first_draws(tree, checkpoint)
        reached = diagnostics(kept["posterior"].to_dataset())
        checks += 1
        report(
            f"{checkpoint} draws per chain: bulk ESS >= {reached.ess_bulk:.0f}, tail ESS >= {reached.ess_tail:.0f}, "
            f"R-hat <= {reached.rhat:.3f} (target {target}, R-hat {RHAT_LIMIT})"
        )
        if reached.meets(target) or checkpoint >= max_draws:
            if finished is None:
                sampler.cancel()
            rule = RULE_ESS if reached.meets(target) else RULE_MAX_DRAWS
            return kept, reached.attrs(rule, target, checks)
        checkpoint = next_checkpoint(reached, target, max_draws)
