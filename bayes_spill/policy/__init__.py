"""After a fit, policy questions: Table 6 counterfactuals, Proposition 1, and location equilibria."""
