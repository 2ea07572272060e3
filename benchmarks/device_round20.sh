#!/usr/bin/env bash
# Session 11, call 3: the GQA kernel's tensor-core bulk (decode_attention_gqa_mma.py, mma=True; not the default
# yet). Its GPU tests and the GQA kernel's, then a sweep against the pair path (gqa) on the Llama-3.1-8B
# shape (32/8) and the 70B one (64/8): warps, caps, split targets.
#   OUT=dir bash benchmarks/device_round20.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 150)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention_gqa.py 2>&1 | tee "$OUT/gpu_tests_gqa.log" | grep -v Warn | tail -5
echo "gqa tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 230)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-8b \
    --rows 8x32768,64x4096,128x4096,16x16384,1x32768 \
    --variants gqa,gqa_mma,gqa_mma_r128,gqa_mma_w4,gqa_mma_w1,gqa_mma_p1024,gqa_mma_p4096,gqa_mma_r128_p4096 2>&1 \
    | tee "$OUT/variants_8b.log" | grep -v Warning
cp "$OUT/v3_variants.json" "$OUT/v3_variants_8b.json" 2>/dev/null
echo "8b sweep done at ${SECONDS}s"
timeout "$(left 150)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-70b \
    --rows 8x32768,64x4096,128x4096 --variants gqa,gqa_mma,gqa_mma_r128,gqa_mma_w4,gqa_mma_p4096 2>&1 \
    | tee "$OUT/variants_70b.log" | grep -v Warning
cp "$OUT/v3_variants.json" "$OUT/v3_variants_70b.json" 2>/dev/null
echo "done at ${SECONDS}s"
