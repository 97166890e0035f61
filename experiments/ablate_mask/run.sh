#!/usr/bin/env bash
# ablate_mask: the paper's mask (the control) vs causal vs full attention, seeds 7, 8, 9, 2200 steps of the
# speedrun's recipe; the control arm reuses the speedrun's control runs (row bf16) where they exist.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONTROL_RUNS=${CONTROL_RUNS-runs/speedrun_bf16} CONTROL_KEEP=${CONTROL_KEEP-experiments/speedrun/runs} \
  EXPECT="causal=worse" \
  experiments/ablation.sh ablate_mask omnigen omnigen "causal model/mask=causal" "full model/mask=full"
