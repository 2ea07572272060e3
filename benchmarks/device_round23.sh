#!/usr/bin/env bash
# Session 12, call 1: the GQA tensor-core bulk with ~28% fewer instructions a tile (whole tiles without length
# masks, value loads at immediate offsets, key biases by an MMA, a lazy running max). Sweeps first (they check
# each variant's error against v1): register caps (255: 8 programs an SM; 168: 12, no spills in the loop), lazy
# against eager max, late value loads, split targets; Llama-3.1-8B then 70B. Then the GQA GPU tests.
#   OUT=dir bash benchmarks/device_round23.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
V8="gqa_mma,gqa_mma_eager,gqa_mma_r200,gqa_mma_r168,gqa_mma_r152,gqa_mma_r144,gqa_mma_r168_eager,gqa_mma_r168_late"
V8="$V8,gqa_mma_r255_late,gqa_mma_r168_p1536,gqa_mma_r168_p3072,gqa_mma_r168_p4096,gqa_pairs"
timeout "$(left 260)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-8b \
    --rows 8x32768,64x4096,16x16384,128x4096 --variants "$V8" 2>&1 | tee "$OUT/variants_8b.log" | grep -v Warning
cp "$OUT/v3_variants.json" "$OUT/variants_8b.json" 2>/dev/null
echo "8b sweep done at ${SECONDS}s"
timeout "$(left 110)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-70b --rows 8x32768,64x4096 \
    --variants gqa_mma,gqa_mma_eager,gqa_mma_r168,gqa_mma_r168_eager,gqa_mma_r168_p3072,gqa_pairs 2>&1 \
    | tee "$OUT/variants_70b.log" | grep -v Warning
cp "$OUT/v3_variants.json" "$OUT/variants_70b.json" 2>/dev/null
echo "70b sweep done at ${SECONDS}s"
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n 8)
timeout "$(left 200)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention_gqa.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -8
echo "done at ${SECONDS}s"
