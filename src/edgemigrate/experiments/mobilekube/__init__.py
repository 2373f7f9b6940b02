"""Mobile-Kube (Ghafouri et al. 2022) experiments: ``apply.py`` carries an agent's placements out on a real backend."""
