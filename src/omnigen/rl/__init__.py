"""Reward fine-tuning, a stage of `fit` (docs/rl.md): the LightningModule (omnigen.rl.module), rollouts of G samples
per prompt (omnigen.rl.rollout), the nft and grpo algorithms (omnigen.rl.algorithms) over their tensor maths
(omnigen.rl.objectives), and rewards from the programmatic Shapes-X2I metrics (omnigen.rl.rewards) or a learned
image-text model (omnigen.rl.learned)."""
