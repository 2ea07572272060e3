#!/usr/bin/env bash
# Kernel round 8, call 3: the shipped kernel (one packed path: the u fold in the key phase, fp16 key
# factors, 16-term fp16 sums, cap 128). All GPU tests; the decode-attention benchmark (Llama-2 shape, v3 and its fp32 path); the
# engine at each side's batch at ctx 4096 (KIVI-2 278, fp16 59, as device_engine_round7.sh) and b1 x 512.
#   OUT=dir bash benchmarks/device_round8c.sh
# Round 8's kernel was not shipped (see device_engine_round8.sh): re-run from commit 28735cf.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
gpu_tests 200
timeout "$(left 150)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3,v3f 2>&1 \
    | tee "$OUT/bench.log" | grep -v Warning | tail -14
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 170)" python3 benchmarks/bench_engine.py kivi:278:4096 fp16:59:4096 2>&1 \
    | tee "$OUT/bench_engine_maxbatch.log" | grep -v Warning | tail -4
mv "$OUT/bench_engine.json" "$OUT/bench_engine_maxbatch.json" 2>/dev/null; echo "max batch done at ${SECONDS}s"
timeout "$(left 60)" python3 benchmarks/bench_engine.py kivi:1:512 fp16:1:512 2>&1 \
    | tee "$OUT/bench_engine_b1.log" | grep -v Warning | tail -4
mv "$OUT/bench_engine.json" "$OUT/bench_engine_b1.json" 2>/dev/null; echo "done at ${SECONDS}s"
