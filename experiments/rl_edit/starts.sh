#!/usr/bin/env bash
# rl_edit's two starting points, seeds 7, 8, 9 (the ablations' seeds): the speedrun's adopted recipe for its
# 20 training minutes, counted in steps (experiment=speedrun_steps: 2200 steps), and the same recipe with the
# edit-region weighting (model.weighting.edits=true). Steps rather than the clock, so that a busy machine
# changes when they finish, not what they learn. The two starts of a seed run side by side, one thread each.
# Writes runs/rl_start_{plain,edits}_s<seed>/ (checkpoints/last.ckpt is step 2200; a start with its step_0002200.ckpt is not fitted again).
#   experiments/rl_edit/starts.sh            SEEDS="7" experiments/rl_edit/starts.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p runs
start() {  # $1 = plain | edits, $2 = seed; a finished start is not fitted again
  local run=runs/rl_start_$1_s$2 extra=()
  [ "$1" = edits ] && extra=(model.weighting.edits=true)
  [ -f "$run/checkpoints/step_0002200.ckpt" ] && return 0
  python -m omnigen.fit experiment=speedrun_steps seed="$2" "${extra[@]}" logger=csv hydra.run.dir="$run" > "$run.log" 2>&1
}
for seed in ${SEEDS:-7 8 9}; do
  start plain "$seed" & plain=$!
  start edits "$seed"
  wait "$plain"
done
