"""The bayes-spill command: one module per command group; each parses arguments and calls one library function."""
