#!/usr/bin/env bash
# One run of an experiment: fit on one CPU thread, then evaluate its last checkpoint.
#   experiments/job.sh NAME FAMILIES [fit overrides...]
# writes $RUNS/NAME/ (the fit's run directory), NAME/fit_seconds (fit wall time) and NAME/eval/
# (python -m omnigen.evaluate). One thread per run, so two runs share a 2-core machine side by side.
# A run whose fit finished is not fitted again (delete NAME/fit_seconds to refit).
set -euo pipefail
name=$1; families=$2; shift 2
run=${RUNS:-runs}/$name
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
if [ ! -f "$run/fit_seconds" ]; then
  start=$(date +%s)
  python -m omnigen.fit "$@" logger=csv hydra.run.dir="$run"
  echo $(( $(date +%s) - start )) > "$run/fit_seconds"
fi
# EVAL_ARGS: extra evaluate keys, which win over these (e.g. EVAL_ARGS="samples_per_family=8")
python -m omnigen.evaluate ckpt="$run/checkpoints/last.ckpt" "families=[$families]" samples_per_family=64 out="$run/eval" ${EVAL_ARGS:-}
