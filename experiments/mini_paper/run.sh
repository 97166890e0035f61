#!/usr/bin/env bash
# mini_paper: one model on the whole X2I mixture (3600 steps of tiny's recipe as of speedrun row 6, ~35
# minutes), seeds 0 and 1 side by side (one thread each), every family evaluated at steps 600, 1200, 2400
# and 3600 (a learning curve), with the untrained floor and the ground-truth ceiling.
# The runs' small files (each evaluation's results.json, fit_seconds, the loss log) are kept in
# experiments/mini_paper/runs/; REPORT=only re-derives results.{json,md} and plot.png from those copies.
# The run of 2026-12-03 used sdpa attention (tiny's attention then; eager since), pinned below. Its loss
# logs were not kept, so its table has no train loss.
set -euo pipefail
cd "$(dirname "$0")/../.."
ALL=text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks
kept=experiments/mini_paper/runs steps=(600 1200 2400 3600)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
evaluate() {  # evaluate CKPT OUT
  python -m omnigen.evaluate ckpt="$1" "families=[$ALL]" samples_per_family=64 out="$2" > /dev/null
}
curve() {  # the averaged weights at each step of the curve
  for step in "${steps[@]}"; do
    evaluate "runs/mini_paper_s$1/checkpoints/step_$(printf %07d "$step").ckpt" "runs/mini_paper_s$1/eval_step$step"
  done
}
if [ "${REPORT:-}" != only ]; then
  for seed in 0 1; do
    experiments/job.sh "mini_paper_s$seed" $ALL experiment=mini_paper seed="$seed" \
      model.backbone.attn_implementation=sdpa &
  done
  wait
  curve 0 & curve 1; wait
  # the floor: seed 0's untrained weights (minute 0 of a wall clock, before the first step)
  python -m omnigen.fit experiment=mini_paper seed=0 model.backbone.attn_implementation=sdpa trainer.max_steps=1 \
    logger=csv callbacks.sample_grid=null hydra.run.dir=runs/mini_paper_floor \
    +callbacks.floor._target_=omnigen.callbacks.wall_clock.WallClockCheckpoint "+callbacks.floor.minutes=[0]" \
    +callbacks.floor.dirpath=runs/mini_paper_floor/checkpoints
  evaluate runs/mini_paper_floor/checkpoints/minute_0.ckpt runs/mini_paper_floor/eval
  python -m omnigen.evaluate ground_truth=true image_size=32 "families=[$ALL]" samples_per_family=64 \
    out=runs/mini_paper_ground_truth > /dev/null
  for seed in 0 1; do  # keep what the report reads
    run=runs/mini_paper_s$seed dest=$kept/mini_paper_s$seed
    for step in "${steps[@]}"; do mkdir -p "$dest/eval_step$step"; cp "$run/eval_step$step/results.json" "$dest/eval_step$step/"; done
    mkdir -p "$dest/csv/version_0"; cp "$run/csv/version_0/metrics.csv" "$dest/csv/version_0/"; cp "$run/fit_seconds" "$dest/"
  done
  mkdir -p "$kept/mini_paper_floor/eval" "$kept/mini_paper_ground_truth"
  cp runs/mini_paper_floor/eval/results.json "$kept/mini_paper_floor/eval/"
  cp runs/mini_paper_ground_truth/results.json "$kept/mini_paper_ground_truth/"
fi
curve_points=$(IFS=,; echo "${steps[*]/#/eval_step}")
# (a value with ": " in it is quoted inside the key=value argument, or it would read as a mapping)
python -m omnigen.report out=experiments/mini_paper "title='mini_paper: the X2I mixture (3600 steps)'" \
  "arms.mini_paper=[$kept/mini_paper_s0,$kept/mini_paper_s1]" "curve=[$curve_points]" \
  floor="$kept/mini_paper_floor" ceiling="$kept/mini_paper_ground_truth"
