"""Stage 3, model: the data a model is built on, the joint likelihood (alpha_i latent or integrated out), and the structural simulator."""
