#!/usr/bin/env bash
# ablate_edit_weight: uniform vs the paper's edit-region loss weighting, two seeds, two runs at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
xargs -P "${JOBS:-2}" -L 1 experiments/job.sh <<'RUNS'
edit_uniform_s0 text_to_image,mixed_modal experiment=ablate_edit_weight model/weighting=uniform seed=0
edit_edit_region_s0 text_to_image,mixed_modal experiment=ablate_edit_weight model/weighting=edit_region seed=0
edit_uniform_s1 text_to_image,mixed_modal experiment=ablate_edit_weight model/weighting=uniform seed=1
edit_edit_region_s1 text_to_image,mixed_modal experiment=ablate_edit_weight model/weighting=edit_region seed=1
RUNS
python -m omnigen.report --out experiments/ablate_edit_weight --title "ablate_edit_weight: loss weighting (800 steps)" \
  --arm uniform=runs/edit_uniform_s0,runs/edit_uniform_s1 --arm edit_region=runs/edit_edit_region_s0,runs/edit_edit_region_s1
