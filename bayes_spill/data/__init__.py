"""Stage 1, data: reading and checking input files, the firm panel (R&D stocks and pools), county geography, embedded datasets."""
