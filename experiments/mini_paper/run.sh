#!/usr/bin/env bash
# mini_paper: one model on the whole X2I mixture (3600 steps of tiny's recipe, ~30 minutes), seeds 0
# and 1 side by side (one thread each), every family evaluated, plus a learning curve from the
# checkpoints at steps 600, 1200 and 2400.
set -euo pipefail
cd "$(dirname "$0")/../.."
ALL=text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks
for seed in 0 1; do experiments/job.sh mini_paper_s$seed $ALL experiment=mini_paper seed=$seed & done
wait
curve() {  # the averaged weights at earlier steps, 64 samples per family
  for step in 600 1200 2400; do
    python -m omnigen.evaluate ckpt=runs/mini_paper_s$1/checkpoints/step_$(printf %07d $step).ckpt samples_per_family=64 \
      out=runs/mini_paper_s$1/eval_step$step > /dev/null
  done
}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
curve 0 & curve 1; wait
# (a value with ": " in it is quoted inside the key=value argument, or it would read as a mapping)
python -m omnigen.report out=experiments/mini_paper "title='mini_paper: the X2I mixture (3600 steps)'" \
  "arms.mini_paper=[runs/mini_paper_s0,runs/mini_paper_s1]"
python -m omnigen.report out=experiments/mini_paper/curve "title='mini_paper: learning curve'" \
  "arms.600=[runs/mini_paper_s0/eval_step600,runs/mini_paper_s1/eval_step600]" \
  "arms.1200=[runs/mini_paper_s0/eval_step1200,runs/mini_paper_s1/eval_step1200]" \
  "arms.2400=[runs/mini_paper_s0/eval_step2400,runs/mini_paper_s1/eval_step2400]" \
  "arms.3600=[runs/mini_paper_s0,runs/mini_paper_s1]" \
  "metrics=[text_to_image/object,text_to_image/colour,text_to_image/position,mixed_modal/edit_correct,\
mixed_modal/unchanged_psnr,subject_driven/subject_fidelity,visual_condition/edge_f1,cv_tasks/edge_f1,\
cv_tasks/seg_miou,cv_tasks/mask_iou]"
