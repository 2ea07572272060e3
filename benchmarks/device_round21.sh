#!/usr/bin/env bash
# Session 11, call 4: the GQA tensor-core bulk with every load of a tile issued before its key MMAs
# (mma_early: the key MMAs wait for the value loads; round 20's build issued the value loads after the key
# MMAs, two memory round trips a tile), at caps 168..255 and 1 or 2 warps, against round 20's order
# (gqa_mma_late) and the pair path. GPU tests of the GQA kernel first.
#   OUT=dir bash benchmarks/device_round21.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-480}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 120)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention_gqa.py 2>&1 | tee "$OUT/gpu_tests_gqa.log" | grep -v Warn | tail -4
echo "gqa tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 200)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-8b \
    --rows 8x32768,64x4096,128x4096,16x16384 \
    --variants gqa,gqa_mma_late,gqa_mma,gqa_mma_r200,gqa_mma_r232,gqa_mma_r255,gqa_mma_w1_r200,gqa_mma_w1_r255,gqa_mma_p1024 \
    2>&1 | tee "$OUT/variants_8b.log" | grep -v Warning
cp "$OUT/v3_variants.json" "$OUT/v3_variants_8b.json" 2>/dev/null
echo "8b sweep done at ${SECONDS}s"
timeout "$(left 120)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-70b \
    --rows 8x32768,64x4096 --variants gqa,gqa_mma_late,gqa_mma,gqa_mma_r232,gqa_mma_r255,gqa_mma_w1_r255 2>&1 \
    | tee "$OUT/variants_70b.log" | grep -v Warning
cp "$OUT/v3_variants.json" "$OUT/v3_variants_70b.json" 2>/dev/null
echo "done at ${SECONDS}s"
