"""bayes_spill: knowledge spillovers, absorptive capacity and spatial sorting (Lychagin 2010) in PyMC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bayes_spill")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
