"""Mobile-Kube's experiments (Ghafouri et al. 2022, sec. VII-VIII): training the RL agents (``training``, figs.
4-6), agents vs users (figs. 7-8), a sample episode timeline (figs. 9-10) and every agent's gap to the exact
eq. 2 optimum."""
