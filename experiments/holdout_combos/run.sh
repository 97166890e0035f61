#!/usr/bin/env bash
# holdout_combos: the quickstart (1000 steps, t2i + mixed_modal at 32², batch 32) with data.holdout=combos, which
# keeps 3 (colour, kind) and 3 (kind, position) pairs out of every training image; seeds 0, 1, 2. Each run's
# checkpoints at steps 200..1000 are evaluated on suite=held_out_combos (every sample shows a held-out pair) and
# suite=seen_combos (none does), 128 samples per family at step 1000 and 32 before; step 1000 also on the ordinary
# suite=shapes (seen against unseen instructions). The untrained model (seed 0's minute_0.ckpt, saved before its
# first step) is the floor, the ground truth the ceiling.
#
# PRIMARY (pre-registered on 2026-12-05, written here before any fit ran): unseen/text_to_image/object at
# eval_step1000, arm held_out_combos against the control seen_combos, hypothesis: worse. That is: among captions
# the training stream never held, the shapes of captions with a held-out pair are drawn with the right kind less
# often than those of captions made only of trained pairs. Every other cell is exploratory (Holm).
#
# REPORT=only re-derives the tables from the kept copies in experiments/holdout_combos/runs (each evaluation's
# results.json, each fit's metrics.csv and fit_seconds; no checkpoints).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/holdout_combos kept=experiments/holdout_combos/runs runs=${RUNS:-runs}
seeds=(0 1 2) steps=(200 400 600 800 1000) suites=(held_out_combos seen_combos)
PRIMARY="unseen/text_to_image/object@eval_step1000" EXPECT="held_out_combos=worse"
export FAMILIES="[text_to_image,mixed_modal]" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ckpt() { printf "%s/checkpoints/step_%07d.ckpt" "$1" "$2"; }
run_jobs() {  # two at a time, one thread each; fails when any fails
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | xargs -d '\n' -n 1 -P 2 bash -c 'set -euo pipefail -f; set -- $1; kind=$1 dest=$2; shift 2
    if [ "$kind" = fit ]; then start=$(date +%s); mkdir -p "$dest"
      python -m omnigen.fit "$@" logger=csv hydra.run.dir="$dest" > "$dest.log" 2>&1
      echo $(( $(date +%s) - start )) > "$dest/fit_seconds"
    else start=$(date +%s)
      python -m omnigen.evaluate "families=$FAMILIES" out="$dest" "$@" > "$dest.log" 2>&1
      echo $(( $(date +%s) - start )) > "$dest/eval_seconds"; fi' _
}
if [ "${REPORT:-}" != only ]; then
  jobs=()
  for seed in "${seeds[@]}"; do  # the quickstart plus the holdout, and a checkpoint of the untrained weights
    run=$runs/holdout_s$seed
    [ -f "$(ckpt "$run" 1000)" ] || jobs+=("fit $run data.holdout=combos seed=$seed \
+callbacks.wall_clock._target_=omnigen.callbacks.wall_clock.WallClockCheckpoint +callbacks.wall_clock.minutes=[0] \
+callbacks.wall_clock.stop_after_last=false +callbacks.wall_clock.dirpath=$run/checkpoints")
  done
  run_jobs "${jobs[@]}"
  jobs=()
  evaluation() {  # evaluation DEST CKPT SAMPLES SUITE [keys...]
    [ -f "$1/results.json" ] || jobs+=("eval $1 ckpt=$2 samples_per_family=$3 suite=$4 ${*:5}")
  }
  for seed in "${seeds[@]}"; do
    run=$runs/holdout_s$seed
    for suite in "${suites[@]}"; do
      for step in "${steps[@]}"; do
        evaluation "$run/eval_${suite}_step$step" "$(ckpt "$run" "$step")" $([ "$step" = 1000 ] && echo 128 || echo 32) "$suite"
      done
    done
    evaluation "$run/eval_shapes_step1000" "$(ckpt "$run" 1000)" 128 shapes
  done
  for suite in "${suites[@]}" shapes; do  # the floor: its seen/unseen parts over the samples step 1000 read
    evaluation "$runs/holdout_s0/eval_${suite}_floor" "$runs/holdout_s0/checkpoints/minute_0.ckpt" 128 "$suite" stream_step=1000
  done
  run_jobs "${jobs[@]}"
  for suite in "${suites[@]}" shapes; do  # the ceiling, split by seed 0's training stream at step 1000
    dest=$runs/holdout_ground_truth/$suite
    [ -f "$dest/results.json" ] || python -m omnigen.evaluate ground_truth=true image_size=32 "families=$FAMILIES" \
      samples_per_family=128 suite="$suite" ckpt="$(ckpt "$runs/holdout_s0" 1000)" out="$dest" > /dev/null
  done
  # Keep the small files the report reads: kept/<suite>_s<seed>/ holds that suite's evaluations of the run
  # (eval_step<N>/results.json) beside the fit's metrics.csv and fit_seconds, so each suite reads as an arm.
  for seed in "${seeds[@]}"; do
    run=$runs/holdout_s$seed
    for suite in "${suites[@]}" shapes; do
      dest=$kept/${suite}_s$seed
      mkdir -p "$dest/csv/version_0"
      cp "$run/csv/version_0/metrics.csv" "$dest/csv/version_0/" && cp "$run/fit_seconds" "$dest/"
      for evaluation in "$run/eval_${suite}_step"*/; do
        evaluation=${evaluation%/} step=${evaluation##*_step}
        mkdir -p "$dest/eval_step$step"
        cp "$evaluation/results.json" "$evaluation/eval_seconds" "$dest/eval_step$step/"
      done
    done
  done
  for suite in "${suites[@]}" shapes; do
    mkdir -p "$kept/floor/$suite" "$kept/ground_truth/$suite"
    cp "$runs/holdout_s0/eval_${suite}_floor/results.json" "$kept/floor/$suite/"
    cp "$runs/holdout_ground_truth/$suite/results.json" "$kept/ground_truth/$suite/"
  done
  cp "$runs/holdout_s0/eval_held_out_combos_step1000/examples.png" "$out/examples_held_out_combos_s0.png"
  # What regenerating a training stream's instructions costs (evaluate does it once per evaluation): the
  # speedrun's length, 2200 steps of batch 32 of the quickstart's data, without and with the holdout.
  python - > "$out/regeneration.json" <<'PY'
import json, os, platform, time
from omnigen.data.modules.shapes import trained_instructions
data = {"_target_": "omnigen.data.modules.shapes.ShapesX2IDataModule", "image_size": 32, "batch_size": 32, "seed": 0}
timings = {}
for holdout in (None, "combos"):
    config = {"data": data | {"holdout": holdout}, "trainer": {"devices": 1}}
    start = time.perf_counter()
    distinct = len(trained_instructions(config, 2200))
    timings[str(holdout)] = {"samples": 2200 * 32, "distinct_instructions": distinct,
                             "seconds": round(time.perf_counter() - start, 2)}
print(json.dumps({"steps": 2200, "batch_size": 32, "threads": os.environ.get("OMP_NUM_THREADS"),
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores", "holdout": timings}, indent=2))
PY
fi
T2I=text_to_image/object,text_to_image/colour,text_to_image/position,text_to_image/exact_scene
UNSEEN=unseen/text_to_image/object,unseen/text_to_image/colour,unseen/text_to_image/position,unseen/text_to_image/exact_scene
EDIT=mixed_modal/edit_correct,mixed_modal/target_object,mixed_modal/unchanged_psnr
curve=() arms=()
for step in "${steps[@]}"; do curve+=("eval_step$step"); done
for suite in "${suites[@]}"; do arms+=("arms.$suite=[$kept/${suite}_s0,$kept/${suite}_s1,$kept/${suite}_s2]"); done
python -m omnigen.report out="$out" "title='holdout_combos: held-out against seen attribute pairs'" "${arms[@]}" \
  control=seen_combos primary="$PRIMARY" "expect.${EXPECT%=*}=${EXPECT#*=}" "curve=[$(IFS=,; echo "${curve[*]}")]" \
  floor="$kept/floor/seen_combos" ceiling="$kept/ground_truth/seen_combos" "metrics=[$UNSEEN,$T2I,$EDIT]"
# Seen against unseen instructions on the ordinary suite (no arms to compare: the columns are the parts).
python -m omnigen.report out="$out/instructions" "title='holdout_combos: seen and unseen instructions'" \
  "arms.holdout=[$kept/shapes_s0/eval_step1000,$kept/shapes_s1/eval_step1000,$kept/shapes_s2/eval_step1000]" \
  floor="$kept/floor/shapes" ceiling="$kept/ground_truth/shapes" \
  "metrics=[$T2I,${T2I//text_to_image/seen/text_to_image},$UNSEEN,mixed_modal/edit_correct,seen/mixed_modal/edit_correct,unseen/mixed_modal/edit_correct]"
