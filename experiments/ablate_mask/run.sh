#!/usr/bin/env bash
# ablate_mask: the paper's mask (the control) vs causal vs full attention, seeds 7, 8, 9, 2200 steps of the
# speedrun's recipe; the control arm reuses the speedrun's control runs (row bf16) where they exist.
# PRIMARY: the one cell that carries the verdict, named on 2026-12-05 from the hypothesis in README.md after these
# runs had finished (issue 32): post hoc for the committed runs, pre-registered for any rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONTROL_RUNS=${CONTROL_RUNS-runs/speedrun_bf16} CONTROL_KEEP=${CONTROL_KEEP-experiments/speedrun/runs} \
  PRIMARY="text_to_image/exact_scene@eval_step2200" EXPECT="causal=worse" \
  experiments/ablation.sh ablate_mask omnigen omnigen "causal model/mask=causal" "full model/mask=full"
