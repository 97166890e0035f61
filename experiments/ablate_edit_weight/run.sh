#!/usr/bin/env bash
# ablate_edit_weight: edits at weight 1 (the control, edits_unweighted: text-to-image scenes are weighted as in
# every fit of the recipe, edits are not) vs the edit-region weighting clipped at 16 or at 64 (the
# paper's), seeds 7, 8, 9, 2200 steps of the speedrun's recipe; the control arm reuses the speedrun's control
# runs (row bf16) where they exist.
# PRIMARY: the one cell that carries the verdict, named on 2026-12-05 from the hypothesis in README.md after these
# runs had finished (issue 32): post hoc for the committed runs, pre-registered for any rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONTROL_RUNS=${CONTROL_RUNS-runs/speedrun_bf16} CONTROL_KEEP=${CONTROL_KEEP-experiments/speedrun/runs} \
  PRIMARY="mixed_modal/edit_correct@eval_step2200" EXPECT="edit_region=better edit_region_64=better" \
  experiments/ablation.sh ablate_edit_weight edits_unweighted \
  edits_unweighted "edit_region model.weighting.edits=true" \
  "edit_region_64 model.weighting.edits=true model.weighting.edit_clip_max=64"
