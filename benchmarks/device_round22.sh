#!/usr/bin/env bash
# Session 11, call 5: the GQA kernel's tensor-core bulk as the default (one warp, every load of a tile first,
# no register cap). The whole GPU suite, then the GQA shapes' table at default calls (gqa) against the pair
# path (gqap), fp16 SDPA and dequantize + SDPA.
#   OUT=dir bash benchmarks/device_round22.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-480}
gpu_tests 250
timeout "$(left 130)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-8b \
    --rows 8x32768,16x16384,64x4096,128x4096,1x32768 --impl gqa,gqap 2>&1 \
    | tee "$OUT/bench_gqa_8b.log" | grep -v Warning | tail -14
cp "$OUT/bench_decode_attention.json" "$OUT/bench_gqa_8b.json" 2>/dev/null
echo "8b bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 90)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-70b \
    --rows 8x32768,64x4096,128x4096 --impl gqa,gqap 2>&1 | tee "$OUT/bench_gqa_70b.log" | grep -v Warning | tail -9
cp "$OUT/bench_decode_attention.json" "$OUT/bench_gqa_70b.json" 2>/dev/null
echo "done at ${SECONDS}s"
