#!/usr/bin/env bash
# Session 8, second call: "auto" now runs the GQA kernel's pair path (4 query heads a kv head, k2v2 fp16). The
# GPU tests (all kernels, engine, end to end); the pair path's variants (4 threads a key word row, caps,
# tiles, splits) on the Llama-3.1-8B shape; the benchmark table (v3 vs gqa, SDPA, dequantize-then-SDPA).
#   OUT=dir bash benchmarks/device_round11b.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-585}
gpu_tests 230
timeout "$(left 170)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-8b --rows 8x32768,64x4096,128x4096,1x32768 \
    --variants gqa,gqa_bw64_w4,gqa_r112,gqa_bw16,gqa_kt4,gqa_kt4_r96,gqa_kt4_bw16,gqa_kt4_bw16_r96,gqa_kt4_bw8_r96,gqa_S16,gqa_S64 \
    2>&1 | tee "$OUT/variants_gqa.log" | grep -v Warning
echo "variants at ${SECONDS}s"
timeout "$(left 160)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-8b --impl v3,gqa 2>&1 \
    | tee "$OUT/bench_gqa.log" | grep -v Warning | tail -14
echo "done at ${SECONDS}s"
