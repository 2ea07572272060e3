#!/usr/bin/env bash
# Session 8, third call: the GQA kernel's split rule (bulk splits a kv head, do_bench at large sizes) and where
# v3 still wins (batch 1, short contexts: GPU time from CUDA graphs), then the lean engine on Llama-3.1-8B
# (GQA 32/8) with the GQA kernel, KIVI vs fp16 at equal batch.
#   OUT=dir bash benchmarks/device_round11c.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
timeout "$(left 150)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096 \
    --variants gqa,gqa_S1,gqa_S2,gqa_S4,gqa_S8,gqa_S16,gqa_S32 2>&1 | tee "$OUT/variants_splits.log" | grep -v Warning
mv "$OUT/v3_variants.json" "$OUT/v3_variants_splits.json"
echo "splits at ${SECONDS}s"
timeout "$(left 150)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-8b --graph \
    --rows 1x512,1x4096,1x32768,2x32768,4x16384,2x8192,8x4096,16x4096 --variants packed,gqa,gqa_bw64_w4,gqa_bw16 2>&1 \
    | tee "$OUT/variants_small.log" | grep -v Warning
mv "$OUT/v3_variants.json" "$OUT/v3_variants_small.json"
echo "small at ${SECONDS}s"
timeout "$(left 200)" python3 benchmarks/bench_engine.py --arch llama-3.1-8b kivi:128:4096 fp16:128:4096 kivi:1:512 fp16:1:512 \
    2>&1 | tee "$OUT/engine_llama3.log" | grep -v Warning | tail -12
echo "done at ${SECONDS}s"
