#!/usr/bin/env bash
# Shapes-X2I speedrun: one records-table row, i.e. one recipe over seeds, two seeds at a time side by
# side (one thread each, the benchmark's machine setting), then every wall-clock checkpoint evaluated.
#   experiments/speedrun/run.sh ROW [fit overrides...]      e.g.  experiments/speedrun/run.sh m1edits model.weighting.edits=true
#   SEEDS="0 1" experiments/speedrun/run.sh lr3e-3 model.optimizer.lr=3e-3
#   BESIDE=1 SEEDS="4" experiments/speedrun/run.sh lr3e-3 model.optimizer.lr=3e-3
# BESIDE=1 runs each seed beside the control's same seed instead of beside the row's next seed, so a
# machine that has become slower or faster since the control ran slows both arms of the pair alike.
# The control is today's experiment=speedrun (tiny), without overrides, as row CONTROL: the last adopted row
# (bf16; its runs are reused where they exist).
# EXPERIMENT=<name> fits experiment=<name> (a config built on the speedrun's) instead of experiment=speedrun.
# Writes runs/speedrun_<ROW>_s<seed>/ (fit, checkpoints/minute_*.ckpt, eval_minute_*/) and
# experiments/speedrun/rows/<ROW>/records.{json,md}. Fits never overlap evaluations, so the clock
# of each fit only ever shares the machine with the other fit of its pair.
set -euo pipefail
cd "$(dirname "$0")/../.."
row=$1; shift
seeds=(${SEEDS:-0 1 2 3})
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p runs
fit() {  # a finished fit (its last wall-clock checkpoint) is not fitted again
  local run=runs/speedrun_${row}_s$1
  [ -f "$run/checkpoints/minute_30.ckpt" ] && return 0
  python -m omnigen.fit experiment="${EXPERIMENT:-speedrun}" seed="$1" "${@:2}" logger=csv hydra.run.dir="$run" > "$run.log" 2>&1
}
pair() {  # $1 on seeds i and i + 1 at once; fails when either fails
  local pids=() pid
  "$1" "${seeds[$2]}" "${@:3}" & pids+=($!)
  if (($2 + 1 < ${#seeds[@]})); then "$1" "${seeds[$2 + 1]}" "${@:3}" & pids+=($!); fi
  for pid in "${pids[@]}"; do wait "$pid"; done
}
every_seed() {  # $1 on every seed: by pairs of seeds, or (BESIDE=1) each seed with the baseline's at once
  local i pid
  if [ -n "${BESIDE:-}" ]; then  # (seeds the control has not run: its finished ones are skipped)
    for ((i = 0; i < ${#seeds[@]}; i++)); do
      "$1" "${seeds[$i]}" "${@:2}" & pid=$!
      row=${CONTROL:-bf16} "$1" "${seeds[$i]}"
      wait "$pid"
    done
  else
    for ((i = 0; i < ${#seeds[@]}; i += 2)); do pair "$1" "$i" "${@:2}"; done
  fi
}
every_seed fit "$@"
# Evaluation: 128 held-out samples per family, 20 Euler steps, guidance 2.0 / 1.5, kv-cache (evaluate's defaults).
evaluate() {
  local run=runs/speedrun_${row}_s$1
  for ckpt in "$run"/checkpoints/minute_*.ckpt; do
    local minute=${ckpt##*/minute_}; minute=${minute%.ckpt}
    [ -f "$run/eval_minute_$minute/results.json" ] || python -m omnigen.evaluate ckpt="$ckpt" \
      "families=[text_to_image,mixed_modal]" samples_per_family=128 out="$run/eval_minute_$minute" > /dev/null
  done
}
every_seed evaluate
truth=runs/speedrun_ground_truth  # the ceiling row: the targets scored as if generated
[ -f "$truth/results.json" ] || python -m omnigen.evaluate ground_truth=true image_size=32 \
  "families=[text_to_image,mixed_modal]" samples_per_family=128 out="$truth" > /dev/null
runs=$(printf "runs/speedrun_${row}_s%s," "${seeds[@]}")
python -m omnigen.speedrun out="experiments/speedrun/rows/$row" ceiling="$truth" "rows.$row=[${runs%,}]"
