# Shell functions that experiments' run.sh scripts share: `source experiments/lib.sh` from the repository root.

keep_evaluations() {  # keep_evaluations RUN DEST: what the report reads, small enough to commit: each
  local evaluation     # eval_minute_* results.json, and the loss log
  for evaluation in "$1"/eval_minute_*; do
    mkdir -p "$2/${evaluation##*/}" && cp "$evaluation/results.json" "$2/${evaluation##*/}/"
  done
  mkdir -p "$2/csv/version_0" && cp "$1/csv/version_0/metrics.csv" "$2/csv/version_0/"
}
