#!/usr/bin/env bash
# ablate_curriculum: 16² then 32² vs 32² only (equal steps and image tokens per step), two seeds, two runs at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
xargs -P "${JOBS:-2}" -L 1 experiments/job.sh <<'RUNS'
curriculum_staged_s0 text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks experiment=ablate_curriculum seed=0
curriculum_32only_s0 text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks experiment=ablate_curriculum seed=0 "curriculum.stages=[{name: 32px, steps: 1000, image_size: 32, batch_size: 32, lr: 1.0e-3}]"
curriculum_staged_s1 text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks experiment=ablate_curriculum seed=1
curriculum_32only_s1 text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks experiment=ablate_curriculum seed=1 "curriculum.stages=[{name: 32px, steps: 1000, image_size: 32, batch_size: 32, lr: 1.0e-3}]"
RUNS
python -m omnigen.report --out experiments/ablate_curriculum --title "ablate_curriculum: 16² → 32² vs 32² only (1000 steps)" \
  --arm staged=runs/curriculum_staged_s0,runs/curriculum_staged_s1 --arm 32only=runs/curriculum_32only_s0,runs/curriculum_32only_s1
