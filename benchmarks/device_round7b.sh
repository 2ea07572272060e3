#!/usr/bin/env bash
# Kernel round 7, call 3: the packed path with fewer instructions a step (codes dequantized by one HFMA2
# each instead of pre-scaled factors, fp16 u straight into the asm, whole value steps unmasked with
# immediate row offsets) and the u fold 2 wide. GPU tests of kernels, static step, engine and end to end;
# the u-fold widths again; then the decode-attention benchmark on the Llama-2 shape.
#   OUT=dir bash benchmarks/device_round7b.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-420}
gpu_tests 200
timeout "$(left 60)" python3 benchmarks/bench_v3_variants.py --rows 8x32768,64x4096 --variants packed,p_f1,p_f4 \
    2>&1 | tee "$OUT/variants.log" | grep -v Warning
timeout "$(left 200)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3,v3f 2>&1 \
    | tee "$OUT/bench.log" | grep -v Warning | tail -16
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
