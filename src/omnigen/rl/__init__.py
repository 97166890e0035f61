"""Reward fine-tuning: rewards from the programmatic Shapes-X2I metrics (omnigen.rl.rewards) or a learned
image-text model (omnigen.rl.learned), and the Flow-GRPO and DiffusionNFT objectives as tensor functions
(omnigen.rl.objectives)."""
