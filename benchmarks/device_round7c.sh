#!/usr/bin/env bash
# Kernel round 7, call 4: the scaled query once a program (key loop 299 SASS instructions a step). GPU tests
# of kernels, static step, engine and end to end; register caps 80 / 72 (6 / 7 programs an SM: fewer
# registers are live now) and u-fold widths; then the decode-attention benchmark on the Llama-2 shape.
#   OUT=dir bash benchmarks/device_round7c.sh
# It measured the query-in-scratch kernel (d0fb350, reverted in c43dfa8): re-run from commit 73fbf3c.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-420}
gpu_tests 200
timeout "$(left 100)" python3 benchmarks/bench_v3_variants.py --rows 8x32768,64x4096,128x4096 \
    --variants packed,p_r80,p_r72,p_f1,p_f4,p_r80_f4 2>&1 | tee "$OUT/variants.log" | grep -v Warning
timeout "$(left 200)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3,v3f 2>&1 \
    | tee "$OUT/bench.log" | grep -v Warning | tail -16
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
