"""Vanilla policy gradient as a small RLlib algorithm (RLlib dropped its PG in 2.10; Ghafouri et al. 2022 used it).

REINFORCE (Williams 1992) on whole episodes: PPO's sampling loop with ``batch_mode="complete_episodes"``, one
gradient step per batch over the whole batch, and the loss ``-mean(log pi(a|s) * G_t)`` where ``G_t`` is the
discounted return to go, standardised over the batch (RLlib's old PG used the raw return; standardising only
rescales the step and keeps the 3e-4 learning rate of Table II usable whatever the reward scale). No critic,
no clipping, no KL term: what makes it "vanilla" is exactly what PPO adds on top.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.ppo import PPO
from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
from ray.rllib.connectors.learner import ComputeReturnsToGo
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.core.learner.torch.torch_learner import TorchLearner


class PGTorchLearner(TorchLearner):
    def build(self) -> None:
        super().build()
        if self.config.add_default_connectors_to_learner_pipeline:
            # returns to go are computed on the episodes before they become a batch (needs whole episodes)
            self._learner_connector.prepend(ComputeReturnsToGo(gamma=self.config.gamma))

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> Any:
        import torch

        module = self.module[module_id].unwrapped()
        dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        logp = dist.logp(batch[Columns.ACTIONS])
        ret = batch[Columns.RETURNS_TO_GO]
        ret = (ret - ret.mean()) / torch.clamp(ret.std(), min=1e-4)
        loss = -torch.mean(logp * ret)
        self.metrics.log_value((module_id, POLICY_LOSS_KEY), loss.detach(), window=1)
        return loss


class PGConfig(RLlibPPOConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or PG)
        self.batch_mode = "complete_episodes"
        self.num_epochs = 1
        self.use_critic = False
        self.use_kl_loss = False
        self.entropy_coeff = 0.0

    def get_default_learner_class(self) -> type:
        return PGTorchLearner


class PG(PPO):
    @classmethod
    def get_default_config(cls) -> PGConfig:
        return PGConfig()
