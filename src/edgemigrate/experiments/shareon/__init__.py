"""ShareOn (Maheshwari et al. 2018): the city-scale simulation sweep (``design``, ``sweep``, ``plots``); the real
two-node emulation lives beside it in ``emulation``."""
