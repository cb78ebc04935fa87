"""Datasets of DFT Hamiltonians: recipes (what to compute), the store (shards + manifest), the builder."""
