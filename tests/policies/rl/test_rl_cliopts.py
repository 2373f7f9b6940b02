"""PPO hyperparameters as click options (field docs become help)."""

from __future__ import annotations

from typing import Any

import click
from click.testing import CliRunner

from edgemigrate.policies.rl.cliopts import ppo_config_from_options, ppo_options
from edgemigrate.policies.rl.ppo import PPOConfig


@click.command()
@ppo_options
def show(**kw: Any) -> None:
    cfg = ppo_config_from_options(kw)
    assert not kw  # every ppo_* option was consumed
    click.echo(repr(cfg))


def test_help_lists_every_field_with_its_doc() -> None:
    out = CliRunner().invoke(show, ["--help"]).output
    assert "--gae-lambda" in out and "GAE lambda (Table I)" in out and "[default: 0.95]" in out
    assert "--clip-vloss / --no-clip-vloss" in out


def test_given_options_override_only_themselves() -> None:
    res = CliRunner().invoke(
        show, ["--learning-rate", "0.001", "--deep-hidden", "32,16", "--no-norm-adv", "--target-kl", "0.02"]
    )
    assert res.exit_code == 0, res.output
    want = PPOConfig(learning_rate=0.001, deep_hidden=(32, 16), norm_adv=False, target_kl=0.02)
    assert res.output.strip() == repr(want)


def test_invalid_value_is_a_one_line_user_error() -> None:
    res = CliRunner().invoke(show, ["--num-minibatches", "7"])
    assert res.exit_code != 0
    assert "not divisible by num_minibatches" in str(res.exception)
