#!/usr/bin/env bash
# Session 11, call 6 (the budget's rest): batch-1 GQA calls from CUDA graphs, the tensor-core bulk's split
# target (p<N>: programs aimed at) against the pair path. Round 22: 1x32K took 77.7 us at 257 splits a kv
# head against the pair path's 57.0.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-120}
timeout "$(left 110)" python3 benchmarks/bench_v3_variants.py --graph --shape llama3.1-8b --rows 1x32768,2x16384,1x8192 \
    --variants gqa_pairs,gqa_mma,gqa_mma_p512,gqa_mma_p1024 2>&1 | tee "$OUT/variants_b1.log" | grep -v Warning
echo "done at ${SECONDS}s"
