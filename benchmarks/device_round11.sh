#!/usr/bin/env bash
# Session 8, first call: the shared-dequantization GQA kernel (kernels/decode_attention_gqa.py) with its fp16x2
# pair path. Its GPU tests; its variants (register caps, tiles, splits, fp32 path) against v3 on the
# Llama-3.1-8B shape; then the benchmark table (v3 vs gqa, fp16 SDPA, dequantize-then-SDPA, graph columns).
#   OUT=dir bash benchmarks/device_round11.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 150)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" tests/test_kernels_decode_attention_gqa.py \
    2>&1 | tee "$OUT/gpu_tests_gqa.log" | grep -v Warn | tail -6
echo "gqa tests at ${SECONDS}s"
timeout "$(left 220)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-8b \
    --rows 8x32768,64x4096,16x16384,128x4096,1x32768 \
    --variants packed,gqa,gqa_r96,gqa_r168,gqa_r255,gqa_bw128_w8,gqa_bw32_w2,gqa_f32 2>&1 \
    | tee "$OUT/variants_gqa.log" | grep -v Warning
echo "variants at ${SECONDS}s"
timeout "$(left 200)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-8b --impl v3,gqa 2>&1 \
    | tee "$OUT/bench_gqa.log" | grep -v Warning | tail -14
echo "done at ${SECONDS}s"
