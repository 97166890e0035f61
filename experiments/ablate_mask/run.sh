#!/usr/bin/env bash
# ablate_mask: the paper's mask vs causal vs full attention, two seeds, two runs at a time (one per core).
set -euo pipefail
cd "$(dirname "$0")/../.."
xargs -P "${JOBS:-2}" -L 1 experiments/job.sh <<'RUNS'
mask_omnigen_s0 text_to_image,mixed_modal experiment=ablate_mask model/mask=omnigen seed=0
mask_causal_s0 text_to_image,mixed_modal experiment=ablate_mask model/mask=causal seed=0
mask_full_s0 text_to_image,mixed_modal experiment=ablate_mask model/mask=full seed=0
mask_omnigen_s1 text_to_image,mixed_modal experiment=ablate_mask model/mask=omnigen seed=1
mask_causal_s1 text_to_image,mixed_modal experiment=ablate_mask model/mask=causal seed=1
mask_full_s1 text_to_image,mixed_modal experiment=ablate_mask model/mask=full seed=1
RUNS
python -m omnigen.report --out experiments/ablate_mask --title "ablate_mask: attention mask (600 steps, t2i + edit)" \
  --arm omnigen=runs/mask_omnigen_s0,runs/mask_omnigen_s1 --arm causal=runs/mask_causal_s0,runs/mask_causal_s1 \
  --arm full=runs/mask_full_s0,runs/mask_full_s1
