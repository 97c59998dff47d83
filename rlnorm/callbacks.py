"""SB3 callbacks that log what the policies here measure."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback


class ModeMismatchCallback(BaseCallback):
    """Log the train/eval mode mismatch of a :class:`~rlnorm.policies.NormActorCriticPolicy` (PPO, A2C).

    Records ``train/mode_mismatch`` (mean |r - 1|) and ``train/mode_mismatch_max`` (max |r - 1|) of the
    probability ratio r on the first minibatch of each update, measured before any gradient step. They
    are recorded at the start of the next rollout, so they land in the same ``progress.csv`` row as the
    rest of that update's ``train/*`` values (SB3 dumps logs between a rollout and the update).

    :param verbose: SB3 verbosity
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._logged_updates = 0

    def _on_rollout_start(self) -> None:
        policy = self.model.policy
        if getattr(policy, "mode_mismatch_updates", 0) > self._logged_updates:
            self.logger.record("train/mode_mismatch", policy.mode_mismatch)
            self.logger.record("train/mode_mismatch_max", policy.mode_mismatch_max)
            self._logged_updates = policy.mode_mismatch_updates

    def _on_step(self) -> bool:
        return True
