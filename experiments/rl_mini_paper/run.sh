#!/usr/bin/env bash
# rl_mini_paper: the reward fine-tuning stage on mini_paper's mixture, at mini_paper's time. mini_paper trains 3600
# steps (~35 minutes, two runs side by side); here each seed trains its first 2400 (~23 minutes, the start), and
# then 12 minutes (the time its last 1200 steps took) of reward fine-tuning (arm rl: experiment=rl_mini_paper,
# rewarded per family by rl/reward=mini_paper) against 12 minutes of the same supervised training (arm sft: the
# start's run resumed at its step 2400, optimizer, EMA and data stream included). The arms of a seed run side by
# side, one thread each, on the training clock (WallClockCheckpoint: 3 / 6 / 12 minutes); nothing else runs.
# Every clock checkpoint is scored on every family (64 held-out samples each, as mini_paper), the start as
# minute 0 of both arms. Floor: the untrained model (the start run's minute_0.ckpt); ceiling: the ground truth.
# PRIMARY (pre-registered in README.md before any arm ran): cv_tasks/seg_miou@eval_minute_12, rl against sft,
# rl=better. Everything else, the seven targets included, is exploratory (Holm).
#   experiments/rl_mini_paper/run.sh            SEEDS="0" experiments/rl_mini_paper/run.sh
#   REPORT=only experiments/rl_mini_paper/run.sh   # the tables again, from the copies in experiments/rl_mini_paper/runs
# Writes runs/rl_mp_start_s<seed>/, runs/rl_mp_{rl,sft}_s<seed>/ experiments/rl_mini_paper/results.{json,md} and
# targets.{json,md} (targets.py: where the seven targets land, per seed; the RL runs' loss, reward and timing).
set -euo pipefail
cd "$(dirname "$0")/../.."
source experiments/lib.sh  # keep_evaluations
seeds=(${SEEDS:-0 1 2}) minutes=(3 6 12) start_steps=2400 start_ckpt=step_0002400.ckpt
ALL=text_to_image,mixed_modal,subject_driven,visual_condition,cv_tasks
out=experiments/rl_mini_paper kept=experiments/rl_mini_paper/runs runs=runs truth=experiments/mini_paper/runs/mini_paper_ground_truth
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
clock=(+callbacks.wall_clock._target_=omnigen.callbacks.wall_clock.WallClockCheckpoint  # neither arm's experiment has one
  "+callbacks.wall_clock.minutes=[$(IFS=,; echo "${minutes[*]}")]" +callbacks.wall_clock.stop_after_last=true
  trainer.max_steps=1000000 callbacks.checkpoint.every_n_train_steps=1000000)
start() {  # start SEED: mini_paper's first 2400 steps (and its untrained weights, the floor); once
  local run=$runs/rl_mp_start_s$1
  [ -f "$run/checkpoints/$start_ckpt" ] && return 0
  python -m omnigen.fit experiment=mini_paper seed="$1" trainer.max_steps=$start_steps logger=csv \
    +callbacks.wall_clock._target_=omnigen.callbacks.wall_clock.WallClockCheckpoint "+callbacks.wall_clock.minutes=[0]" \
    +callbacks.wall_clock.stop_after_last=false "+callbacks.wall_clock.dirpath=$run/checkpoints" hydra.run.dir="$run" > "$run.log" 2>&1
}
fit() {  # fit ARM SEED: done once its last clock checkpoint exists
  local run=$runs/rl_mp_$1_s$2 from=$runs/rl_mp_start_s$2/checkpoints/$start_ckpt
  [ -f "$run/checkpoints/minute_${minutes[-1]}.ckpt" ] && return 0
  local arm=(experiment=mini_paper ckpt_path="$from")  # sft: the start's own run, resumed
  [ "$1" = rl ] && arm=(experiment=rl_mini_paper model.finetune.init_from="$from" callbacks.reward_guard.every_n_steps=0)
  python -m omnigen.fit "${arm[@]}" seed="$2" "${clock[@]}" "+callbacks.wall_clock.dirpath=$run/checkpoints" \
    logger=csv hydra.run.dir="$run" > "$run.log" 2>&1
}
evaluate() {  # evaluate CKPT OUT
  [ -f "$2/results.json" ] || python -m omnigen.evaluate ckpt="$1" "families=[$ALL]" samples_per_family=64 \
    out="$2" > /dev/null
}
evaluate_seed() {  # every evaluation of one seed, kept (results.json, the loss log) in $kept
  local seed=$1 from=$runs/rl_mp_start_s$1 arm run m
  evaluate "$from/checkpoints/$start_ckpt" "$from/eval_minute_0"
  evaluate "$from/checkpoints/minute_0.ckpt" "$from/eval_floor"
  for arm in rl sft; do
    run=$runs/rl_mp_${arm}_s$seed
    mkdir -p "$run/eval_minute_0" && cp "$from/eval_minute_0/results.json" "$run/eval_minute_0/"
    for m in "${minutes[@]}"; do evaluate "$run/checkpoints/minute_$m.ckpt" "$run/eval_minute_$m"; done
    keep_evaluations "$run" "$kept/${run##*/}"
  done
  mkdir -p "$kept/${from##*/}/eval_floor" && cp "$from/eval_floor/results.json" "$kept/${from##*/}/eval_floor/"
}
if [ "${REPORT:-}" != only ]; then
  mkdir -p "$runs"
  pids=()  # the starts, all at once: counted in steps, so sharing the cores changes when they end, not what they learn
  for seed in "${seeds[@]}"; do start "$seed" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
  [ "${STARTS_ONLY:-}" = 1 ] && exit 0
  for seed in "${seeds[@]}"; do
    fit rl "$seed" & pid=$!
    fit sft "$seed"
    wait "$pid"
  done
  pids=()  # two seeds' evaluations at a time; each wait fails the script if that seed's did
  for seed in "${seeds[@]}"; do
    evaluate_seed "$seed" & pids+=($!)
    if [ ${#pids[@]} = 2 ]; then for pid in "${pids[@]}"; do wait "$pid"; done; pids=(); fi
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
fi
arm_runs() { printf "$kept/rl_mp_$1_s%s," "${seeds[@]}" | sed 's/,$//'; }
python -m omnigen.report out="$out" "title='rl_mini_paper: 12 minutes of RL against SFT from mini_paper step 2400'" \
  control=sft "arms.sft=[$(arm_runs sft)]" "arms.rl=[$(arm_runs rl)]" floor="$kept/rl_mp_start_s${seeds[0]}/eval_floor" \
  ceiling="$truth" "curve=[eval_minute_0,eval_minute_3,eval_minute_6,eval_minute_12]" \
  primary=cv_tasks/seg_miou@eval_minute_12 expect.rl=better
python "$out/targets.py" $([ "${REPORT:-}" = only ] || echo --examples "$runs")
