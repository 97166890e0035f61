#!/usr/bin/env bash
# ablate_curriculum: 32² throughout (the control) vs the first 500 steps at 16² (curriculum=speedrun), seeds
# 7, 8, 9 on the speedrun's recipe and clock to its 20th minute; reported at equal samples seen (steps 600 /
# 1200 / 2200) and at equal training time (minutes 2.5 / 5 / 10 / 20, in equal_time/). Both arms are fitted
# here, the two of a seed side by side: a comparison at equal time holds only under equal load, so the
# speedrun's control runs (fitted while other jobs ran) are not reused.
# PRIMARY: the one cell that carries the verdict, named on 2026-12-05 from the hypothesis in README.md after these
# runs had finished (issue 32): post hoc for the committed runs, pre-registered for any rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES="2.5 5 10 20" PRIMARY="text_to_image/exact_scene@eval_step2200" EXPECT="staged=better" CONTROL_KEEP=${CONTROL_KEEP-experiments/speedrun/runs} \
  experiments/ablation.sh ablate_curriculum flat32 flat32 "staged curriculum=speedrun"
