"""The simulator experiments of Liu et al. 2024 (PPCM): sweeps over nodes and tasks, the training run and its
ablation, and the controlled experiment on the expert PPCM learns from.

* :mod:`.design` - algorithms, RL variants, experts, sweep points, evaluation seeds, delay components.
* :mod:`.sweep` - training and evaluation jobs, the node/task sweeps and the training run (``edgemigrate
  experiment ppcm nodes|tasks|training``).
* :mod:`.controlled` - the controlled experiment and the merge of its runs (``edgemigrate experiment ppcm
  controlled|controlled-merge``).
* :mod:`.plots` - their figures.

Imports go one way: ``design`` <- ``plots`` <- ``sweep`` <- ``controlled``.
"""
