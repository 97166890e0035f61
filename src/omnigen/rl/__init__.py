"""Reward fine-tuning: rewards (omnigen.rl.rewards) from the programmatic Shapes-X2I metrics."""
