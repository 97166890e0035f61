#!/usr/bin/env bash
# One screen of reward fine-tuning from one of rl_edit's starts (starts.sh): ITERS iterations (default 100) of
# experiment=rl_edit with the given overrides, one thread, then its last.ckpt and the start evaluated on
# SAMPLES held-out samples per family (default 64; evaluate's sampling: 20 Euler steps, guidance 2.0 / 1.5).
# Screens are counted in iterations, not minutes, so two run side by side without biasing each other.
#   experiments/rl_edit/screen.sh NAME START SEED [fit overrides...]
#   e.g. experiments/rl_edit/screen.sh lr3e-4 edits 7 model.optimizer.lr=3e-4 model.optimizer.muon_lr=3e-3
# Writes runs/rl_screen_<NAME>_<START>_s<SEED>/ (fit, fit_seconds, eval/) and runs/rl_start_<START>_s<SEED>/eval_screen/.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1 start=$2 seed=$3; shift 3
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
from=runs/rl_start_${start}_s$seed run=runs/rl_screen_${name}_${start}_s$seed
samples=${SAMPLES:-64}
evaluate() {  # evaluate CKPT OUT
  [ -f "$2/results.json" ] || python -m omnigen.evaluate ckpt="$1" "families=[text_to_image,mixed_modal]" \
    samples_per_family="$samples" out="$2" > /dev/null
}
if [ ! -f "$run/fit_seconds" ]; then
  began=$(date +%s)
  python -m omnigen.fit experiment=rl_edit seed="$seed" model.finetune.init_from="$from/checkpoints/step_0002200.ckpt" \
    trainer.max_steps="${ITERS:-100}" callbacks.reward_guard.every_n_steps=0 logger=csv "$@" hydra.run.dir="$run" \
    > "$run.log" 2>&1
  echo $(( $(date +%s) - began )) > "$run/fit_seconds"
fi
evaluate "$run/checkpoints/last.ckpt" "$run/eval"
evaluate "$from/checkpoints/step_0002200.ckpt" "$from/eval_screen"
