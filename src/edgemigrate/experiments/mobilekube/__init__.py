"""Mobile-Kube's test experiments (Ghafouri et al. 2022, sec. VII-VIII): agents vs users (figs. 7-8), a sample
episode timeline (figs. 9-10) and every agent's gap to the exact eq. 2 optimum."""
