#!/usr/bin/env bash
# ablate_positions: sequential (control) vs omni rotary positions, seeds 7, 8, 9, 30 training minutes each in
# fp32 (the speedrun's rows 5 and 6, named pema and omni there), every wall-clock checkpoint evaluated.
# The fits and evaluations are experiments/speedrun/run.sh's (runs/speedrun_<row>_s<seed>/).
#   experiments/ablate_positions/run.sh                                         # ~2 h 30 min on 2 cores
#   REPORT=only R=experiments/speedrun/runs experiments/ablate_positions/run.sh  # the report from the kept runs
# PRIMARY: the one cell that carries the verdict, named on 2026-12-05 from the hypothesis in README.md after these
# runs had finished (issue 32): post hoc for the committed runs, pre-registered for any rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${REPORT:-}" != only ]; then
  EXPERIMENT=ablate_positions SEEDS="7 8 9" experiments/speedrun/run.sh pema model/positions=sequential
  EXPERIMENT=ablate_positions SEEDS="7 8 9" experiments/speedrun/run.sh omni model/positions=omni
fi
R=${R:-runs}  # R=experiments/speedrun/runs with REPORT=only: the report from the kept copies of the rows' runs
arm() { echo "arms.$1=[$R/speedrun_$2_s7,$R/speedrun_$2_s8,$R/speedrun_$2_s9]"; }
python -m omnigen.report out=experiments/ablate_positions "title=ablate_positions (fp32, 30 training minutes)" \
  "$(arm sequential pema)" "$(arm omni omni)" control=sequential \
  primary=mixed_modal/unchanged_psnr@eval_minute_30 expect.omni=better \
  "curve=[eval_minute_2.5,eval_minute_5,eval_minute_10,eval_minute_20,eval_minute_30]" \
  floor="$R/speedrun_pema_s7/eval_minute_0" ceiling="$R/speedrun_ground_truth"
