"""Calibration studies of the joint model: simulation-based calibration and a Monte Carlo against the two-step."""
