#!/usr/bin/env bash
# mini_paper: one model on the whole X2I mixture, two seeds side by side, evaluated per family, plus a
# learning curve from the checkpoints at steps 600 and 1200.
set -euo pipefail
cd "$(dirname "$0")/../.."
xargs -P "${JOBS:-2}" -L 1 experiments/job.sh <<'RUNS'
mini_paper_s0 text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks experiment=mini_paper seed=0
mini_paper_s1 text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks experiment=mini_paper seed=1
RUNS
for step in 600 1200; do
  for seed in 0 1; do
    run=runs/mini_paper_s$seed
    python -m omnigen.evaluate ckpt=$run/checkpoints/step_000$step.ckpt samples_per_family=64 out=$run/eval_step$step
  done
done
python -m omnigen.report --out experiments/mini_paper --title "mini_paper: the X2I mixture (1800 steps)" \
  --arm mini_paper=runs/mini_paper_s0,runs/mini_paper_s1
python -m omnigen.report --out experiments/mini_paper/curve --title "mini_paper: learning curve" \
  --arm 600=runs/mini_paper_s0/eval_step600,runs/mini_paper_s1/eval_step600 \
  --arm 1200=runs/mini_paper_s0/eval_step1200,runs/mini_paper_s1/eval_step1200 \
  --arm 1800=runs/mini_paper_s0,runs/mini_paper_s1
