#!/usr/bin/env bash
# Next session's first call (branch gqa-qg8 merged): 8 query heads a kv head on the GQA kernel (two programs a
# kv head, 4 query heads each; "auto" keeps v3 there until measured). Its GPU tests; v3 vs gqa variants on the
# Llama-3.1-70B attention shape (64 / 8 heads); the benchmark table on that shape.
#   OUT=dir bash benchmarks/device_round12.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 150)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" tests/test_kernels_decode_attention_gqa.py \
    2>&1 | tee "$OUT/gpu_tests_gqa.log" | grep -v Warn | tail -6
timeout "$(left 200)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-70b \
    --rows 8x32768,64x4096,128x4096,1x32768 --variants packed,gqa,gqa_S4,gqa_S8,gqa_S16 2>&1 \
    | tee "$OUT/variants_70b.log" | grep -v Warning
timeout "$(left 180)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-70b --impl v3,gqa 2>&1 \
    | tee "$OUT/bench_70b.log" | grep -v Warning | tail -14
echo "done at ${SECONDS}s"
