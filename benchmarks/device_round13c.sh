#!/usr/bin/env bash
# Session 9, call 4: "auto" runs the tensor-core bulk (2 warps) on MHA k2v2 fp16 calls of >= 256 programs.
# The GPU suite, the benchmark table on the Llama-2 shape, and the bulk's warps / caps.
#   OUT=dir bash benchmarks/device_round13c.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-520}
gpu_tests 250
timeout "$(left 120)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3 2>&1 \
    | tee "$OUT/bench_mha.log" | grep -v Warning | tail -10
sweep 8x32768,64x4096,128x4096 packed,mma_w2,mma_w1,mma_w2_r96,mma_w2_r168 150
echo "done at ${SECONDS}s"
