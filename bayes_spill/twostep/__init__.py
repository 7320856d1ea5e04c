"""The paper's two-step estimator (GMM, then maximum likelihood) and its Table 4 sorting evidence."""
