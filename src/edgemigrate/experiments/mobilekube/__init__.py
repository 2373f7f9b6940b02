"""Mobile-Kube (Ghafouri et al. 2022): the test experiments (sec. VII-VIII: agents vs users, figs. 7-8; a sample
episode timeline, figs. 9-10; every agent's gap to the exact eq. 2 optimum), training the RL agents
(``training``, figs. 4-6) and applying an agent's placements on real backends (``apply``)."""
