"""bayes_spill: knowledge spillovers, absorptive capacity and spatial sorting (Lychagin 2010) in PyMC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bayes_spill")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["Fit", "fit", "load", "load_dataset", "load_panel", "prepare", "simulate_industry", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import bayes_spill` (and `bayes-spill --help`) does not import PyMC.
    if name in ("Fit", "fit", "load"):
        from bayes_spill import api

        return getattr(api, name)
    if name == "load_dataset":
        from bayes_spill.data.datasets import load_dataset

        return load_dataset
    if name == "load_panel":
        from bayes_spill.data.inputs import load_panel

        return load_panel
    if name == "prepare":
        from bayes_spill.data.compustat import prepare

        return prepare
    if name == "simulate_industry":
        from bayes_spill.model.simulate import simulate_industry

        return simulate_industry
    raise AttributeError(f"module 'bayes_spill' has no attribute {name!r}")
