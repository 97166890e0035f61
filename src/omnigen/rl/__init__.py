"""Reward fine-tuning: rewards from the programmatic Shapes-X2I metrics (omnigen.rl.rewards) and the
Flow-GRPO and DiffusionNFT objectives as tensor functions (omnigen.rl.objectives)."""
