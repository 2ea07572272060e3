#!/usr/bin/env bash
# Kernel round 8, call 2: the new defaults (u fold in the key phase, fp16 key factors, 16-term fp16 sums,
# cap 128). All GPU tests of kernels, quant-pack, static step, engine and end to end; each option off in
# turn (bench_v3_variants.py); the decode-attention benchmark on the Llama-2 shape.
#   OUT=dir bash benchmarks/device_round8b.sh
# Its option variants were removed after commit 958a651 and the kernel was not shipped: re-run from 958a651.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
gpu_tests 200
sweep 8x32768,64x4096,128x4096,16x16384,1x32768 packed,p_r96,p_flat,p_kf8,p_vf8,p_round7,p_kfold_r96 170
timeout "$(left 200)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3,v3f 2>&1 \
    | tee "$OUT/bench.log" | grep -v Warning | tail -16
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
