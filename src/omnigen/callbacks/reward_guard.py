"""A reward-hacking guard for reward fine-tuning (omnigen.rl): every n steps, the reward of held-out samples
(`evaluate`'s stream, never trained on) beside the training reward, and the Shapes-X2I metrics the reward does
not pay for. When the training reward climbs while the held-out one does not follow, or an unpaid metric
falls, it warns (action=warn) or ends training (action=stop, after which last.ckpt is written as always).

Logged: guard/train_reward (the mean of the rollouts since the last check), guard/heldout_reward,
guard/gap (the training reward's gain since the start minus the held-out one's), guard/unpaid/<family>/<metric>.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning import LightningModule, Trainer

from omnigen.callbacks.evaluation import EvaluationCallback
from omnigen.rl.rewards import RolloutSample

log = logging.getLogger(__name__)
ACTIONS = ("warn", "stop")
# Cheaper than a full evaluation's, and sampled as rollouts are (no guidance): the guard compares like with like.
GUARD_DEFAULTS = {"every_n_steps": 50, "samples_per_family": 32, "num_inference_steps": 10, "guidance_scale": 1.0,
                  "img_guidance_scale": 1.0}  # fmt: skip


class RewardGuard(EvaluationCallback):
    def __init__(self, tolerance: float = 0.1, action: str = "warn", **evaluation: Any) -> None:
        """tolerance: how far the two rewards' gains may part, and how far an unpaid [0, 1] metric may fall, before
        the guard acts. `evaluation`: EvaluationCallback's settings (every_n_steps, families, samples_per_family,
        image_size, num_inference_steps, guidance_scale, img_guidance_scale, seed); families None holds out the
        families the reward has terms for."""
        super().__init__(**(GUARD_DEFAULTS | evaluation))
        samples_per_family = self.samples_per_family
        if action not in ACTIONS:
            raise ValueError(f"reward_guard.action must be one of {ACTIONS}, got {action!r}")
        if samples_per_family < 1 or tolerance <= 0:
            raise ValueError(
                f"reward_guard needs samples_per_family >= 1 and tolerance > 0, got {samples_per_family}, {tolerance}"
            )
        self.held_out = evaluation.get("families")  # None: the reward's families, known once the module is
        self.tolerance, self.action = tolerance, action
        self.start: dict[str, Any] | None = None  # the first check's values: what later ones are compared to
        self.train_rewards: list[float] = []  # the rollouts' mean rewards since the last check
        self.last_rollout: int | None = None
        self.warnings: list[str] = []

    def state_dict(self) -> dict[str, Any]:
        return {"start": self.start, "train_rewards": self.train_rewards}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start, self.train_rewards = state["start"], state["train_rewards"]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.start is None:  # the start's held-out values (a resumed run keeps its own)
            self.trigger(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        rollout = pl_module.rollout
        if rollout is not None and id(rollout) != self.last_rollout:  # a new rollout: its reward counts once
            self.last_rollout = id(rollout)
            self.train_rewards.append(float(rollout.rewards.mean()))
            if self.start is not None and self.start["train"] is None:  # the first rollout: the training reward's start
                self.start["train"] = self.train_rewards[-1]
        super().on_train_batch_end(trainer, pl_module, *args)

    def run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        reward = pl_module.reward
        families = self.held_out or reward_families(reward)
        results, examples = self.evaluate(pl_module, families)
        samples = [RolloutSample(e["family"], e["task"], e["spec"], e["instruction"]) for e in examples]
        values, _ = reward.score_batch(samples, [e["generated"] for e in examples])
        heldout = sum(values) / len(values)
        train = sum(self.train_rewards) / len(self.train_rewards) if self.train_rewards else None
        self.train_rewards = []
        unpaid = {
            f"{family}/{metric}": value
            for family in families
            for metric, value in results[family].items()
            if metric != "n" and metric not in paid_metrics(reward, family)
        }
        if self.start is None:
            self.start = {"heldout": heldout, "train": None, "unpaid": unpaid}
        metrics = {"guard/heldout_reward": heldout} | {f"guard/unpaid/{k}": v for k, v in unpaid.items()}
        if train is not None:
            metrics["guard/train_reward"] = train
        parted = self.parted(heldout, train, unpaid, metrics)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        if parted:
            message = f"reward guard at step {trainer.global_step}: {'; '.join(parted)}"
            self.warnings.append(message)
            log.warning("%s%s", message, " (stopping: reward_guard.action=stop)" if self.action == "stop" else "")
            if self.action == "stop":
                trainer.should_stop = True

    def parted(
        self, heldout: float, train: float | None, unpaid: dict[str, float], metrics: dict[str, float]
    ) -> list[str]:
        """What has parted since the first check, in words (and guard/gap into `metrics`)."""
        start, found = self.start, []
        if train is not None and start["train"] is not None:
            gap = (train - start["train"]) - (heldout - start["heldout"])
            metrics["guard/gap"] = gap
            if gap > self.tolerance:
                found.append(
                    f"the training reward gained {train - start['train']:+.3f} but the held-out reward "
                    f"{heldout - start['heldout']:+.3f}"
                )
        for name, value in unpaid.items():
            was = start["unpaid"].get(name)
            if was is not None and 0 <= was <= 1 and was - value > self.tolerance:  # [0, 1] metrics (not dB)
                found.append(f"unpaid {name} fell {was:.3f} -> {value:.3f}")
        return found


def reward_families(reward: Any) -> list[str]:
    """The families a programmatic reward has terms for; a reward without any needs reward_guard.families."""
    terms = getattr(reward, "terms", None)
    if not terms:
        raise ValueError(
            f"{type(reward).__name__} names no Shapes-X2I families: set callbacks.reward_guard.families "
            "(e.g. [text_to_image, mixed_modal]), or callbacks.reward_guard=null"
        )
    return list(dict.fromkeys(key.partition("/")[0] for key in terms))


def paid_metrics(reward: Any, family: str) -> set[str]:
    """The metrics a programmatic reward pays for in any term of `family` (or of its tasks); none for others."""
    return {
        name
        for key, terms in (getattr(reward, "terms", None) or {}).items()
        if key.partition("/")[0] == family
        for term in terms
        for name in term.product
    }
