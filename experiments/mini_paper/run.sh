#!/usr/bin/env bash
# mini_paper: one model on the whole X2I mixture (3600 steps, the 30-minute-on-2-cores recipe), two
# seeds one after the other on both cores, every family evaluated, plus a learning curve from the
# checkpoints at steps 1200 and 2400.
set -euo pipefail
cd "$(dirname "$0")/../.."
ALL=text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks
for seed in 0 1; do
  THREADS=2 experiments/job.sh mini_paper_s$seed $ALL experiment=mini_paper seed=$seed
  for step in 1200 2400; do
    python -m omnigen.evaluate ckpt=runs/mini_paper_s$seed/checkpoints/step_000$step.ckpt samples_per_family=64 \
      out=runs/mini_paper_s$seed/eval_step$step
  done
done
python -m omnigen.report --out experiments/mini_paper --title "mini_paper: the X2I mixture (3600 steps)" \
  --arm mini_paper=runs/mini_paper_s0,runs/mini_paper_s1
python -m omnigen.report --out experiments/mini_paper/curve --title "mini_paper: learning curve" \
  --arm 1200=runs/mini_paper_s0/eval_step1200,runs/mini_paper_s1/eval_step1200 \
  --arm 2400=runs/mini_paper_s0/eval_step2400,runs/mini_paper_s1/eval_step2400 \
  --arm 3600=runs/mini_paper_s0,runs/mini_paper_s1 \
  --metrics text_to_image/object text_to_image/colour text_to_image/position mixed_modal/edit_correct subject_driven/subject_kind \
  visual_condition/edge_f1 visual_condition/seg_miou cv_tasks/seg_miou cv_tasks/edge_f1
