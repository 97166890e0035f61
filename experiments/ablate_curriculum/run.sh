#!/usr/bin/env bash
# ablate_curriculum: 32² throughout (the control) vs the first 500 steps at 16² (curriculum=speedrun), seeds
# 7, 8, 9 on the speedrun's recipe and clock to its 20th minute; reported at equal samples seen (steps 600 /
# 1200 / 2200) and at equal training time (minutes 2.5 / 5 / 10 / 20, in equal_time/). The control arm reuses
# the speedrun's control runs (row bf16) where they exist.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONTROL_RUNS=${CONTROL_RUNS-runs/speedrun_bf16} MINUTES="2.5 5 10 20" EXPECT="staged=better" \
  experiments/ablation.sh ablate_curriculum flat32 flat32 "staged curriculum=speedrun"
