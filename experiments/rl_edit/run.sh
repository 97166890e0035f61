#!/usr/bin/env bash
# rl_edit's headline: from each start (starts.sh: the adopted recipe's 2200 steps, "plain", and the same with the
# edit-region weighting, "edits") and each seed, 10 more minutes of reward fine-tuning (arm rl: experiment=rl_edit,
# whose sampling policy the screens chose, model.old_decay=0.5; RL_ARGS adds overrides) against 10 more minutes
# of the same supervised training (arm sft: the start's own run resumed from its step 2200, optimizer, EMA and
# data stream included). The two arms of a (start, seed) run side by side, one thread each, on the training clock
# (WallClockCheckpoint: 2.5 / 5 / 10 minutes, saving outside the clock); nothing else runs during the fits.
# Every clock checkpoint is evaluated, the two starts' evaluations side by side (128 held-out samples per family,
# evaluate's defaults: 20 Euler steps, guidance 2.0 / 1.5), the start itself as minute 0 of both arms. Floor: the
# untrained model (the start run's minute_0.ckpt); ceiling: the ground truth.
#
# PRIMARY (pre-registered in README.md before any headline fit ran): for start plain,
# mixed_modal/edit_correct@eval_minute_10, rl against the control sft, hypothesis rl=better; for start edits,
# mixed_modal/unchanged_psnr@eval_minute_10, rl=better. Every other cell is exploratory (Holm).
#   RL_ARGS="model.optimizer.lr=3e-4 ..." experiments/rl_edit/run.sh     SEEDS="7" STARTS="edits" ...
#   REPORT=only experiments/rl_edit/run.sh        # the tables again, from the kept copies in experiments/rl_edit/runs
# Writes runs/rl_edit_{rl,sft}_<start>_s<seed>/ and experiments/rl_edit/<start>/results.{json,md}, plot.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
source experiments/lib.sh  # keep_evaluations
seeds=(${SEEDS:-7 8 9}) starts=(${STARTS:-plain edits}) minutes=(2.5 5 10)
out=experiments/rl_edit kept=experiments/rl_edit/runs runs=runs truth=runs/speedrun_ground_truth
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
clock=("callbacks.wall_clock.minutes=[$(IFS=,; echo "${minutes[*]}")]" callbacks.wall_clock.stop_after_last=true
  trainer.max_steps=1000000 callbacks.checkpoint.every_n_train_steps=1000000)
weighting() { [ "$1" = edits ] && echo model.weighting.edits=true || echo model.weighting.edits=false; }
fit() {  # fit ARM START SEED: a fit is done once its last clock checkpoint exists
  local run=$runs/rl_edit_$1_$2_s$3 from=$runs/rl_start_$2_s$3/checkpoints/step_0002200.ckpt
  [ -f "$run/checkpoints/minute_${minutes[-1]}.ckpt" ] && return 0
  if [ "$1" = rl ]; then
    python -m omnigen.fit experiment=rl_edit seed="$3" model.finetune.init_from="$from" callbacks.reward_guard.every_n_steps=0 \
      +callbacks.wall_clock._target_=omnigen.callbacks.wall_clock.WallClockCheckpoint "+callbacks.wall_clock.dirpath=$run/checkpoints" \
      "+${clock[0]}" "+${clock[1]}" "${clock[@]:2}" ${RL_ARGS:-} logger=csv hydra.run.dir="$run" > "$run.log" 2>&1
  else
    python -m omnigen.fit experiment=speedrun_steps seed="$3" "$(weighting "$2")" ckpt_path="$from" "${clock[@]}" \
      logger=csv hydra.run.dir="$run" > "$run.log" 2>&1
  fi
}
evaluate() {  # evaluate CKPT OUT
  [ -f "$2/results.json" ] || python -m omnigen.evaluate ckpt="$1" "families=[text_to_image,mixed_modal]" \
    samples_per_family=128 out="$2" > /dev/null
}
evaluate_start() {  # every evaluation of one start's seeds and arms, kept in $kept
  local start=$1 seed from arm run m
  for seed in "${seeds[@]}"; do
    from=$runs/rl_start_${start}_s$seed
    evaluate "$from/checkpoints/step_0002200.ckpt" "$from/eval_minute_0"
    evaluate "$from/checkpoints/minute_0.ckpt" "$from/eval_floor"
    for arm in rl sft; do
      run=$runs/rl_edit_${arm}_${start}_s$seed
      mkdir -p "$run/eval_minute_0" && cp "$from/eval_minute_0/results.json" "$run/eval_minute_0/"
      for m in "${minutes[@]}"; do evaluate "$run/checkpoints/minute_$m.ckpt" "$run/eval_minute_$m"; done
      keep_evaluations "$run" "$kept/${run##*/}"
    done
    mkdir -p "$kept/${from##*/}/eval_floor" && cp "$from/eval_floor/results.json" "$kept/${from##*/}/eval_floor/"
  done
}
if [ "${REPORT:-}" != only ]; then
  mkdir -p "$runs"
  for start in "${starts[@]}"; do
    for seed in "${seeds[@]}"; do
      fit rl "$start" "$seed" & pid=$!
      fit sft "$start" "$seed"
      wait "$pid"
    done
  done
  pids=()
  for start in "${starts[@]}"; do evaluate_start "$start" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done  # each wait fails the script if that start's evaluations did
  [ -f "$truth/results.json" ] || python -m omnigen.evaluate ground_truth=true image_size=32 \
    "families=[text_to_image,mixed_modal]" samples_per_family=128 out="$truth" > /dev/null
  mkdir -p "$kept/ground_truth" && cp "$truth/results.json" "$kept/ground_truth/"
fi
t2i=text_to_image/object,text_to_image/colour,text_to_image/position,text_to_image/count,text_to_image/exact_scene
edits=mixed_modal/edit_correct,mixed_modal/unchanged_psnr,mixed_modal/target_exact_scene,mixed_modal/target_object
metrics=$t2i,$edits,seen/text_to_image/exact_scene,unseen/text_to_image/exact_scene  # edits: every instruction is seen
for start in "${starts[@]}"; do
  primary=mixed_modal/edit_correct@eval_minute_10
  [ "$start" = edits ] && primary=mixed_modal/unchanged_psnr@eval_minute_10
  arm_runs() { printf "$kept/rl_edit_$1_${start}_s%s," "${seeds[@]}"; }
  # (the title is quoted inside the key=value argument: its ": " would read as a mapping)
  python -m omnigen.report out="$out/$start" "title='rl_edit from the $start start: 10 minutes of RL against SFT'" \
    "metrics=[$metrics]" \
    control=sft "arms.sft=[$(arm_runs sft | sed 's/,$//')]" "arms.rl=[$(arm_runs rl | sed 's/,$//')]" \
    floor="$kept/rl_start_${start}_s${seeds[0]}/eval_floor" ceiling="$kept/ground_truth" \
    "curve=[eval_minute_0,eval_minute_2.5,eval_minute_5,eval_minute_10]" primary="$primary" expect.rl=better
done
