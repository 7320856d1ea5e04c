"""After a fit, checking: posterior predictive checks, identification, model comparison, figures and the report."""
