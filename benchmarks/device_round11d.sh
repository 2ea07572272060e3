#!/usr/bin/env bash
# Session 8, last call: the final code ("auto" runs the GQA kernel's pair path on calls of >= 512 key tiles, its
# split rule aims at one wave). The GPU tests (all kernels, engine, end to end, one e2e case on the GQA
# kernel), the benchmark table on the Llama-3.1-8B shape (v3 vs gqa; fp16 SDPA, dequantize-then-SDPA; graph
# columns), then v1 variants for short contexts (GPU time from graphs, Llama-2 shape: the 1x512 target).
#   OUT=dir bash benchmarks/device_round11d.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
gpu_tests 260
timeout "$(left 170)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-8b --impl v3,gqa 2>&1 \
    | tee "$OUT/bench_gqa.log" | grep -v Warning | tail -14
echo "bench at ${SECONDS}s"
timeout "$(left 120)" python3 benchmarks/bench_v3_variants.py --graph --rows 1x512,1x4096 \
    --variants packed,v1,v1_S1,v1_S1_n128_w8,v1_n16_S32,v1_n32_S16,v1_n64_S8,v1_n64_S8_w8,v1_nodot_n16_S32 2>&1 \
    | tee "$OUT/variants_short.log" | grep -v Warning
echo "done at ${SECONDS}s"
