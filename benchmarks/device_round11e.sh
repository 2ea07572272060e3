#!/usr/bin/env bash
# Session 8, fifth call: the short-call rule ("auto" runs v1 with one tile a program on calls of <= 512 tiles of
# 64 tokens). The GPU tests (all kernels, engine, end to end), the batch-1 rows of the benchmark on both
# shapes (graph columns), and the lean engine's batch-1 step (Llama-2-7B and Llama-3.1-8B shapes).
#   OUT=dir bash benchmarks/device_round11e.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-440}
gpu_tests 230
timeout "$(left 90)" python3 benchmarks/bench_decode_attention.py --rows 1x512,1x4096 --impl v1,v3 2>&1 \
    | tee "$OUT/bench_short.log" | grep -v Warning | tail -10
echo "bench at ${SECONDS}s"
timeout "$(left 60)" python3 benchmarks/bench_engine.py kivi:1:512 fp16:1:512 kivi:1:512 fp16:1:512 2>&1 \
    | tee "$OUT/engine_b1.log" | grep -v Warning | tail -6
mv "$OUT/bench_engine.json" "$OUT/bench_engine_llama2.json"
timeout "$(left 50)" python3 benchmarks/bench_engine.py --arch llama-3.1-8b kivi:1:512 fp16:1:512 2>&1 \
    | tee "$OUT/engine_b1_llama3.log" | grep -v Warning | tail -4
echo "done at ${SECONDS}s"
