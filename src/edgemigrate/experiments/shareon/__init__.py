"""ShareOn experiments (Maheshwari et al. 2018)."""
