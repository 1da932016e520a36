"""A matrix of models × targets × recipes × devices, run resumably (edge-bert matrix)."""
