"""The per-node decision loop of ShareOn (Maheshwari et al. 2018, sec. III-C) on real hosts.

Each edge node decides for its own containers: :class:`~.loop.NodeLoop` queries its own agent and its
neighbours' agents for their resource reports over the agents' mutual-TLS control plane (with the node's own
certificate), builds a :class:`~edgemigrate.policies.shareon.NodeView`, calls the same pure
``ShareOnAgent.decide`` the simulator runs, records the decision, and asks its own agent to migrate under the
standing grant the operator gave it (:mod:`edgemigrate.control.grants`).

Why a package of its own, at the layer of ``mobileuser``: it imports both ``policies`` (the decision) and
``control`` (reports, grants, the migration request), so it sits above them; ``control`` may not import
``policies`` (the agent daemon knows nothing of any placement policy: it only enforces the grant), and the
loop belongs to a deployment, not to one experiment (the emulation runs it in process today; a command that
starts it per node is not written yet).
"""

from __future__ import annotations
