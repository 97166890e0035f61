#!/usr/bin/env bash
# One ablation on the speedrun's recipe: every arm on every seed for the experiment's step budget (its
# config's trainer.max_steps), then each arm's checkpoints at STEPS evaluated and reported against the
# control arm (paired by seed).
#   experiments/ablation.sh EXPERIMENT CONTROL "ARM [fit overrides...]" ...
#   e.g. experiments/ablation.sh ablate_mask omnigen omnigen "causal model/mask=causal" "full model/mask=full"
# PRIMARY="family/metric[@eval_step<N>|@eval_minute_<m>]" is the pre-registered cell (default point: the
# last of STEPS) that alone carries the verdict, and EXPECT="ARM=better|worse ..." the hypotheses about it;
# every other cell is exploratory (Holm-corrected; omnigen.utils.stats). SEEDS (default "7 8 9");
# STEPS (the checkpoints evaluated, default "600 1200 2200": the last one is the verdict's); MINUTES (e.g.
# "5 10 20", for experiments on the speedrun's clock: its checkpoints evaluated too, and a second report at
# equal training time in <OUT>/equal_time; a fit is done at its last minute); FIT_ARGS and
# EVAL_ARGS (extra fit overrides and evaluate keys, which win); RUNS (default runs) and OUT (default
# experiments/<EXPERIMENT>): where the runs and the report go.
# CONTROL_RUNS=runs/speedrun_bf16 reuses those runs (runs/speedrun_bf16_s<seed>) as the control arm where
# they exist: experiment=speedrun is the same run for its first steps (constant lr after warm-up).
# Before the report, each run's evaluations (results.json; examples.png at the last step and minute), loss
# log and fit time are kept in KEEP/<run> (default experiments/<EXPERIMENT>/runs; a reused control run's and
# the ceiling's in CONTROL_KEEP, default KEEP), small enough to commit. REPORT=only skips fits, evaluations
# and keeping, and reports from those copies.
# Fits run two at a time, one thread each, seed by seed (the arms of a seed side by side); evaluations
# (128 held-out samples per family, evaluate's defaults otherwise) run after every fit, two at a time.
# Writes runs/<EXPERIMENT>_<ARM>_s<seed>/ (fit, fit_seconds, checkpoints, eval_step<N>/) and
# experiments/<EXPERIMENT>/results.{json,md}, plot.png.
set -euo pipefail
cd "$(dirname "$0")/.."
experiment=$1 control=$2; shift 2
arms=("$@") seeds=(${SEEDS:-7 8 9}) steps=(${STEPS:-600 1200 2200}) minutes=(${MINUTES:-})
runs=${RUNS:-runs} truth=${TRUTH:-${RUNS:-runs}/speedrun_ground_truth}  # the ceiling: the targets scored as if generated
kept=${KEEP:-experiments/$experiment/runs}; control_kept=${CONTROL_KEEP:-$kept}
if [ "${REPORT:-}" = only ]; then  # the report from the kept copies
  runs=$kept truth=$control_kept/${truth##*/}
  [ -z "${CONTROL_RUNS:-}" ] || CONTROL_RUNS=$control_kept/${CONTROL_RUNS##*/}
fi
export FAMILIES="[text_to_image,mixed_modal]" EVAL_ARGS=${EVAL_ARGS:-} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$runs"
run_dir() {  # run_dir ARM SEED
  local reused=${CONTROL_RUNS:-}_s$2
  if [ "$1" = "$control" ] && [ -n "${CONTROL_RUNS:-}" ] && [ -d "$reused" ]; then echo "$reused"
  else echo "$runs/${experiment}_$1_s$2"; fi
}
ckpt() { printf "%s/checkpoints/step_%07d.ckpt" "$1" "$2"; }
done_at() {  # the checkpoint a finished fit of run $1 has written
  if [ ${#minutes[@]} -gt 0 ]; then echo "$1/checkpoints/minute_${minutes[-1]}.ckpt"; else ckpt "$1" "${steps[-1]}"; fi
}
jobs=()  # "kind run [overrides...]" in the order they run: fits seed by seed, then evaluations
for seed in "${seeds[@]}"; do
  for arm in "${arms[@]}"; do
    read -r name overrides <<< "$arm"
    run=$(run_dir "$name" "$seed")
    [ -f "$(done_at "$run")" ] || jobs+=("fit $run experiment=$experiment seed=$seed $overrides ${FIT_ARGS:-}")
  done
done
run_jobs() {  # two at a time; fails when any fails
  [ ${#jobs[@]} -gt 0 ] && [ "${REPORT:-}" != only ] || return 0
  printf '%s\n' "${jobs[@]}" | xargs -d '\n' -n 1 -P 2 bash -c 'set -euo pipefail -f; set -- $1; kind=$1 run=$2; shift 2
    if [ "$kind" = fit ]; then start=$(date +%s); mkdir -p "$run"
      python -m omnigen.fit "$@" logger=csv hydra.run.dir="$run" > "$run.log" 2>&1
      echo $(( $(date +%s) - start )) > "$run/fit_seconds"
    else python -m omnigen.evaluate ckpt="$1" "families=$FAMILIES" samples_per_family=128 out="$run" $EVAL_ARGS > /dev/null; fi' _
}
run_jobs
jobs=()
for seed in "${seeds[@]}"; do
  for arm in "${arms[@]}"; do
    run=$(run_dir "${arm%% *}" "$seed")
    for step in "${steps[@]}"; do
      [ -f "$run/eval_step$step/results.json" ] || jobs+=("eval $run/eval_step$step $(ckpt "$run" "$step")")
    done
    for minute in "${minutes[@]}"; do
      [ -f "$run/eval_minute_$minute/results.json" ] || jobs+=("eval $run/eval_minute_$minute $run/checkpoints/minute_$minute.ckpt")
    done
  done
done
floor=$(run_dir "$control" "${seeds[0]}")/eval_floor  # the untrained model (minute 0)
[ -f "$floor/results.json" ] || jobs+=("eval $floor $(run_dir "$control" "${seeds[0]}")/checkpoints/minute_0.ckpt")
[ -f "$truth/results.json" ] || [ "${REPORT:-}" = only ] || python -m omnigen.evaluate ground_truth=true image_size=32 "families=$FAMILIES" \
  samples_per_family=128 out="$truth" $EVAL_ARGS > /dev/null
run_jobs
keep() {  # keep RUN DEST: the run's small files, which the report reads
  local evaluation last
  mkdir -p "$2/csv/version_0"
  cp "$1/csv/version_0/metrics.csv" "$2/csv/version_0/"
  [ ! -f "$1/fit_seconds" ] || cp "$1/fit_seconds" "$2/"
  for evaluation in "$1"/eval_*/; do
    evaluation=${evaluation%/}
    [ -f "$evaluation/results.json" ] || continue
    mkdir -p "$2/${evaluation##*/}"; cp "$evaluation/results.json" "$2/${evaluation##*/}/"
  done
  for last in "eval_step${steps[-1]}" ${minutes:+"eval_minute_${minutes[-1]}"}; do
    [ ! -f "$1/$last/examples.png" ] || cp "$1/$last/examples.png" "$2/$last/"
  done
}
if [ "${REPORT:-}" != only ]; then
  for seed in "${seeds[@]}"; do
    for arm in "${arms[@]}"; do
      run=$(run_dir "${arm%% *}" "$seed") dest=$kept
      [ "$run" = "$runs/${experiment}_${arm%% *}_s$seed" ] || dest=$control_kept
      [ "$(realpath -m "$run")" = "$(realpath -m "$dest/${run##*/}")" ] || keep "$run" "$dest/${run##*/}"
    done
  done
  dest=$control_kept/${truth##*/}
  [ "$(realpath -m "$truth")" = "$(realpath -m "$dest")" ] || { mkdir -p "$dest"; cp "$truth/results.json" "$dest/"; }
fi
report=() curve=() clock=()
for step in "${steps[@]}"; do curve+=("eval_step$step"); done
for minute in "${minutes[@]}"; do clock+=("eval_minute_$minute"); done
for arm in "${arms[@]}"; do
  name=${arm%% *} dirs=()
  for seed in "${seeds[@]}"; do dirs+=("$(run_dir "$name" "$seed")"); done
  report+=("arms.$name=[$(IFS=,; echo "${dirs[*]}")]")
done
report+=(control="$control" floor="$floor" ceiling="$truth")
primary=${PRIMARY:-} point=${PRIMARY#*@}
[ "$point" != "$primary" ] || { point=${curve[-1]}; primary=${primary:+$primary@$point}; }
hypotheses() {  # the primary cell and its hypotheses go to the one report whose evaluations hold its point
  local at
  [ -n "$primary" ] || return 0
  for at in "$@"; do [ "$at" = "$point" ] || continue
    echo "primary=$primary"
    for hypothesis in ${EXPECT:-}; do echo "expect.$hypothesis"; done  # expect.ARM=better|worse
  done
}
out=${OUT:-experiments/$experiment}
mapfile -t judged < <(hypotheses "${curve[@]}")
python -m omnigen.report out="$out" title="$experiment" "${report[@]}" "${judged[@]}" \
  "curve=[$(IFS=,; echo "${curve[*]}")]"
if [ ${#clock[@]} -gt 0 ]; then
  mapfile -t judged < <(hypotheses "${clock[@]}")
  python -m omnigen.report out="$out/equal_time" title="$experiment at equal training time" "${report[@]}" \
    "${judged[@]}" "curve=[$(IFS=,; echo "${clock[*]}")]"
fi
