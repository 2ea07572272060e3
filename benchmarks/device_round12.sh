#!/usr/bin/env bash
# Session 9's first call: 8 query heads a kv head on the GQA kernel (two programs a
# kv head, 4 query heads each; "auto" keeps v3 there until measured). The GPU suite; v3 vs gqa variants on the
# Llama-3.1-70B attention shape (64 / 8 heads); the benchmark table on that shape.
#   OUT=dir bash benchmarks/device_round12.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
# the whole GPU suite: the refactors since round 11 (host_math, _rest_tiles, REP) were SASS-identical or host-only
gpu_tests 260
timeout "$(left 200)" python3 benchmarks/bench_v3_variants.py --shape llama3.1-70b \
    --rows 8x32768,64x4096,128x4096,1x32768 --variants packed,gqa,gqa_S4,gqa_S8,gqa_S16 2>&1 \
    | tee "$OUT/variants_70b.log" | grep -v Warning
timeout "$(left 180)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-70b --impl v3,gqa 2>&1 \
    | tee "$OUT/bench_70b.log" | grep -v Warning | tail -14
echo "done at ${SECONDS}s"
