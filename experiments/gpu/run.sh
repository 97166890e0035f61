#!/usr/bin/env bash
# The GPU check, one command on one CUDA device: the paper preset (Phi-3-mini over the SDXL VAE, random weights)
# trained with FSDP2 on one device at 256² and 512², sampled at 1024² with and without the kv-cache, beside
# diffusers' OmniGenTransformer2DModel on the same weights. Writes experiments/gpu/results.json; exits 1 with one
# line naming the failed part(s). See experiments/gpu/README.md.
#   experiments/gpu/run.sh                                   # the full check (CUDA)
#   experiments/gpu/run.sh tiny out=/tmp/gpu_check.json      # the same parts on the CPU, tiny preset, < 1 minute
#   experiments/gpu/run.sh parts=[fit] fit_batches=[4,1]      # any key=value of experiments/gpu/check.py (--help)
set -euo pipefail
cd "$(dirname "$0")/../.."
args=()
for arg in "$@"; do
  if [[ $arg == tiny ]]; then args+=(tiny=true); else args+=("$arg"); fi
done
exec python experiments/gpu/check.py "${args[@]}"
