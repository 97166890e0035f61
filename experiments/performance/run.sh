#!/usr/bin/env bash
# The performance benchmarks of experiments/performance/README.md, one after another (each alternates
# its two sides run by run; never run two at once on a 2-core machine). Writes the JSON files here.
set -euo pipefail
cd "$(dirname "$0")"
WIDE=model.backbone.config.hidden_size=256,model.backbone.config.intermediate_size=1024
# fp32 with sdpa (the faster attention in fp32; tiny's eager is the faster one in bf16, below)
BENCH=(threads=2 "override=[$WIDE,model.backbone.attn_implementation=sdpa]")
python -m omnigen.bench train_step batch=8 repeats=9 compile=none memory=true "${BENCH[@]}" json=train_step_compile_none.json
python -m omnigen.bench train_step batch=8 repeats=9 compile=ours "${BENCH[@]}" json=train_step_compile_ours.json
python -m omnigen.bench sampling repeats=7 memory=true "${BENCH[@]}" json=sampling.json
python -m omnigen.bench sampling batch=4 repeats=5 "${BENCH[@]}" json=sampling_batch4.json
# bf16 autocast (trainer=cpu's precision): ours with sdpa, then with eager attention (tiny's), diffusers' sdpa beside both
python -m omnigen.bench train_step batch=8 repeats=7 compile=none dtype=bfloat16 "${BENCH[@]}" json=train_step_bf16_sdpa.json
python -m omnigen.bench train_step batch=8 repeats=7 compile=none dtype=bfloat16 threads=2 \
    "override=[$WIDE,model.backbone.attn_implementation=eager]" \
    json=train_step_bf16_eager.json
MIXTURE=data=mixture,data.batch_size=32
python -m omnigen.bench packing batches=50 "override=[$MIXTURE]" json=packing_mixture.json
python -m omnigen.bench packing batches=50 json=packing_mixed_sizes.json \
    "override=[$MIXTURE,data.mixed_sizes=true,data.resolution.mode=raw,data.resolution.size=48,\
data.families.edit.sources.0.image_size=16,data.families.subject.sources.0.image_size=48,\
data.families.other.sources.0.image_size=16]"
# the quickstart's own batches (data=shapes), and its training step in fp32 against bf16 on one thread
python -m omnigen.bench packing batches=50 threads=1 json=packing_quickstart.json
OMP_NUM_THREADS=1 python attention_cpu.py --compare precision --json precision_quickstart_1thread.json
