#!/usr/bin/env bash
# fast_sampling: how much faster can a trained checkpoint sample at equal quality? Sampler settings
# (experiments/fast_sampling/settings.py: fewer Euler steps, time-shifted schedules, guidance on an interval of t,
# step caching, and combinations) against today's default, c20 (20 uniform Euler steps, guidance 2.0 / 1.5 at
# every step), on two kinds of checkpoint, 3 seeds each:
#   quickstart: `python -m omnigen.fit seed=S` (1000 steps), seeds 0, 1, 2, step 1000;
#   speedrun: the best recorded recipe (the speedrun's row 7, `experiment=speedrun_steps`), seeds 7, 8, 9,
#             step 2200: rl_edit's plain starts (runs/rl_start_plain_s*), fitted here when missing.
# Stages, each skipped where its output exists:
#   1. fits, and the untrained model of each kind (the floor);
#   2. the screen: every setting on seed 0 / 7 of each kind, on evaluation seed 1 (64 samples per family: other
#      samples than the confirmation's), to choose the settings confirmed;
#   3. the confirmation: CONFIRM's settings and the control on every seed, on the held-out evaluation (seed 0,
#      128 samples per family, split into seen and unseen instructions), evaluations two at a time, one thread each;
#   4. timing (timing.py): seconds per image at batch 1 and 16, 2 threads, the settings alternated in one process
#      (and decision_cost.json: the step cache's skip decision alone);
#   5. the report per kind (python -m omnigen.report, control c20) and the frontier (frontier.py).
#
# PRIMARY (pre-registered on 2026-12-06, commit 04510ee at 10:58 UTC, after the screen (screen.md), before stage 3):
# mixed_modal/unchanged_psnr of the speedrun checkpoints (the best recipe's), the one evaluation; hypothesis for
# every confirmed setting: worse than c20. Chosen because it was the score the screen saw move most with fewer
# steps (t2i scores moved by one or two samples of 64). A setting meets the issue's goal where, on both kinds,
# it is >= 2x faster at batch 1 and at batch 16 and no headline metric's paired interval lies below 0
# (frontier.py); every cell but the primary one is exploratory (Holm within each kind's report).
# CONFIRM (chosen from the screen): e10 and e8_k0.5 (the fewest uniform / shifted steps at 2x or more whose screen
# scores stayed near c20), e6_k0.5 (the fastest shifted one), c20_tc0.2 and c20_tc0.2_o0 (step caching,
# extrapolating / reusing), e10_g0-0.5 and e10_tc0.2 (combinations).
#
# REPORT=only re-derives the tables and the frontier from the kept copies in experiments/fast_sampling/runs.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.."
out=experiments/fast_sampling kept=experiments/fast_sampling/runs runs=${RUNS:-runs}
kinds=(quickstart speedrun) families="[text_to_image,mixed_modal]"
CONFIRM=(${CONFIRM:-e10 e8_k0.5 e6_k0.5 c20_tc0.2 c20_tc0.2_o0 e10_g0-0.5 e10_tc0.2})
PRIMARY=mixed_modal/unchanged_psnr EXPECT=worse
seeds() { [ "$1" = quickstart ] && echo "0 1 2" || echo "7 8 9"; }
steps() { [ "$1" = quickstart ] && echo 1000 || echo 2200; }
run_dir() { [ "$1" = quickstart ] && echo "$runs/fast_qs_s$2" || echo "$runs/fast_sr_s$2"; }
ckpt() {  # ckpt KIND SEED: the checkpoint compared
  if [ "$1" = quickstart ]; then printf "%s/checkpoints/step_%07d.ckpt" "$(run_dir "$1" "$2")" 1000
  else printf "%s/rl_start_plain_s%s/checkpoints/step_0002200.ckpt" "$runs" "$2"; fi
}
floor_ckpt() { [ "$1" = quickstart ] && echo "$runs/fast_qs_floor/checkpoints/minute_0.ckpt" \
  || echo "$runs/rl_start_plain_s7/checkpoints/minute_0.ckpt"; }
run_jobs() {  # two at a time, one thread each; fails when any fails
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 xargs -d '\n' -n 1 -P 2 bash -c 'set -euo pipefail -f
    set -- $1; kind=$1 dest=$2; shift 2; mkdir -p "$(dirname "$dest")"
    if [ "$kind" = fit ]; then python -m omnigen.fit "$@" logger=csv hydra.run.dir="$dest" > "$dest.log" 2>&1
    else python -m omnigen.evaluate "families='"$families"'" out="$dest" "$@" > "$dest.log" 2>&1; fi' _
}
clock="+callbacks.wall_clock._target_=omnigen.callbacks.wall_clock.WallClockCheckpoint +callbacks.wall_clock.minutes=[0]"
if [ "${REPORT:-}" != only ]; then
  jobs=()  # 1. the checkpoints
  for seed in $(seeds quickstart); do
    [ -f "$(ckpt quickstart "$seed")" ] || jobs+=("fit $(run_dir quickstart "$seed") seed=$seed")
  done
  for seed in $(seeds speedrun); do
    [ -f "$(ckpt speedrun "$seed")" ] || jobs+=("fit $runs/rl_start_plain_s$seed experiment=speedrun_steps seed=$seed")
  done
  [ -f "$(floor_ckpt quickstart)" ] || jobs+=("fit $runs/fast_qs_floor seed=0 $clock +callbacks.wall_clock.dirpath=$runs/fast_qs_floor/checkpoints")
  run_jobs "${jobs[@]}"
  jobs=()  # 2. the screen
  for kind in "${kinds[@]}"; do
    seed=$(seeds "$kind" | cut -d' ' -f1)
    for name in $(python -c "import sys; sys.path.insert(0, '$out'); from settings import SETTINGS; print(*SETTINGS)"); do
      dest=$(run_dir "$kind" "$seed")/screen_$name
      [ -f "$dest/results.json" ] || jobs+=("eval $dest ckpt=$(ckpt "$kind" "$seed") seed=1 samples_per_family=64 $(python $out/settings.py "$name")")
    done
  done
  run_jobs "${jobs[@]}"
  keep() {  # keep RUN_DIR PATTERN: each evaluation's results.json, what the report reads
    local evaluation
    for evaluation in "$1"/$2; do
      [ -d "$evaluation" ] || continue  # its .log beside it
      mkdir -p "$kept/${1##*/}/${evaluation##*/}" && cp "$evaluation/results.json" "$kept/${1##*/}/${evaluation##*/}/"
    done
  }
  for kind in "${kinds[@]}"; do keep "$(run_dir "$kind" "$(seeds "$kind" | cut -d' ' -f1)")" "screen_*"; done
  if [ ${#CONFIRM[@]} -gt 0 ]; then
    jobs=()  # 3. the confirmation, the floor and the ceiling
    for kind in "${kinds[@]}"; do
      for seed in $(seeds "$kind"); do
        for name in c20 "${CONFIRM[@]}"; do
          dest=$(run_dir "$kind" "$seed")/eval_$name
          [ -f "$dest/results.json" ] || jobs+=("eval $dest ckpt=$(ckpt "$kind" "$seed") samples_per_family=128 $(python $out/settings.py "$name")")
        done
      done
      dest=$runs/fast_floor_$kind
      [ -f "$dest/results.json" ] || jobs+=("eval $dest ckpt=$(floor_ckpt "$kind") samples_per_family=128 stream_step=$(steps "$kind")")
    done
    [ -f "$runs/fast_ground_truth/results.json" ] || jobs+=("eval $runs/fast_ground_truth ground_truth=true image_size=32 samples_per_family=128")
    run_jobs "${jobs[@]}"
    # 4. timing: nothing else may run beside it
    for kind in "${kinds[@]}"; do
      seed=$(seeds "$kind" | cut -d' ' -f1)
      [ -f "$out/timing_$kind.json" ] || OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python $out/timing.py \
        "$(ckpt "$kind" "$seed")" "$out/timing_$kind.json" c20 "${CONFIRM[@]}"
    done
    # what the step cache's skip decision costs: every step computed through it (c20_tc1e-9) against c20
    [ -f "$out/decision_cost.json" ] || OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python $out/timing.py \
      "$(ckpt quickstart 0)" "$out/decision_cost.json" c20 c20_tc1e-9
    for kind in "${kinds[@]}"; do
      for seed in $(seeds "$kind"); do keep "$(run_dir "$kind" "$seed")" "eval_*"; done
      mkdir -p "$kept/fast_floor_$kind" && cp "$runs/fast_floor_$kind/results.json" "$kept/fast_floor_$kind/"
    done
    mkdir -p "$kept/fast_ground_truth" && cp "$runs/fast_ground_truth/results.json" "$kept/fast_ground_truth/"
  fi
fi
# 5. the reports, from the kept copies
python $out/frontier.py "$out" "$PRIMARY" "$EXPECT" c20 "${CONFIRM[@]}"
