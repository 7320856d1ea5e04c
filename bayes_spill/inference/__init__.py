"""Stage 4, inference: sampling, posterior files, the fit summary, alpha_i drawn back, benchmarks of the samplers."""
