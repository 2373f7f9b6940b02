"""Mobile-Kube (Ghafouri et al. 2022): training the RL agents (``training``, figs. 4-6) and evaluating them."""
