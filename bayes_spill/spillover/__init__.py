"""Stage 2, spillover: the distance-decay kernel, the spillover fields S(lambda), and their certified approximations."""
