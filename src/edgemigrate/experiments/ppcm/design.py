"""The design of the Liu et al. 2024 (PPCM) experiments: algorithms, RL variants, experts, sweep points,
evaluation seeds and the reported delay components.

Shared by the sweeps (:mod:`.sweep`), the controlled experiment (:mod:`.controlled`) and their plots
(:mod:`.plots`); it imports nothing of theirs, so the plots need not import the module that draws them.
"""

from __future__ import annotations

from typing import Any

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.registry import suggest

SCENARIO = "ppcm-paper"
BASELINES = ("dep_soft", "down", "pso", "de", "ga", "monkey", "kube")
RL_ALGOS = ("ppcm", "ppo")
ALGORITHMS = RL_ALGOS + BASELINES
ABLATIONS = ("ppcm", "ppo", "ppcm_mlp_actor", "ppcm_mlp_critic")
#: Experts PPCM can take its demonstrations from: Liu et al. 2024 use DEP_SOFT; LEAST_DELAY (argmin of estimated
#: T_k) and GA (acting one task at a time through the env, ``BatchPolicy.act``) are strong in our cost model.
EXPERTS = ("dep_soft", "least_delay", "ga")
#: Policies outside the paper's eight baselines that may still be evaluated (e.g. the strong expert itself).
EXTRA_POLICIES = ("least_delay",)
#: RL variant -> (PPOConfig changes, fixed expert or None = the run's expert, default DEP_SOFT).
RL_VARIANTS: dict[str, tuple[dict[str, Any], str | None]] = {
    "ppcm": ({}, None),
    "ppo": ({"demo_episodes": 0}, None),
    "ppcm_mlp_actor": ({"actor": "mlp"}, None),
    "ppcm_mlp_critic": ({"critic": "mlp"}, None),
    "ppcm_light_bc": ({"bc_epochs": 2}, None),  # the same demonstrations, 2 instead of 30 BC epochs
    "ppcm_no_bc": ({"bc_epochs": 0}, None),  # the same demonstrations only in PPO's minibatches, no warm start
    "ppcm_strong": ({}, "least_delay"),  # demonstrations from the least-estimated-T_k expert
    "ppcm_strong_light_bc": ({"bc_epochs": 2}, "least_delay"),
    "ppcm_ga": ({}, "ga"),  # demonstrations from GA deciding one task per call
}
EVAL_SEED0 = 10_000
COMPONENTS = ("per_task_deployment_s", "per_task_backhaul_s", "per_task_computation_s", "per_task_migration_s",
              "per_task_total_s")
COMPONENT_TITLES = ("deployment (arrange)", "backhaul", "computation", "migration", "total")
NODE_POINTS = (9, 18, 27, 36)
TASK_POINTS = (30, 60, 90, 120, 150)  # task arrivals per minute over all users


def check_expert(expert: str) -> str:
    """``expert`` if it is a known demonstration expert, else a one-line ConfigError with a suggestion."""
    if expert not in EXPERTS:
        raise ConfigError(f"unknown expert '{expert}' (choose {' or '.join(EXPERTS)}){suggest(expert, EXPERTS)}")
    return expert


def variant_expert(algo: str, expert: str = "dep_soft") -> str | None:
    """The expert an RL variant learns from: its fixed one, else ``expert``; None when it uses no demonstrations."""
    cfg_changes, fixed = RL_VARIANTS[algo]
    if cfg_changes.get("demo_episodes", 1) == 0:
        return None
    return check_expert(fixed or expert)
