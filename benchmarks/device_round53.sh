#!/usr/bin/env bash
# Session 18, third call: the new defaults (PDL with the call's first launch as a dependent too; the GQA window's own
# launch at whole waves of splits on two-wave rows; v1's 32-token tiles on short calls of at most a program an SM) on
# the issue's rows, 8B, 70B and Llama-2 shapes, from CUDA graphs; then every GPU test.
#   OUT=dir LIMIT=s bash benchmarks/device_round53.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-590}
export REPEAT=2
variants rows_8b 90 --graph --shape llama3.1-8b --rows 1x512,1x32768,8x32768,16x16384,64x4096,96x4096,128x4096 \
    --variants auto
variants rows_70b 50 --graph --shape llama3.1-70b --rows 1x512,8x32768,64x4096,128x4096 --variants auto
variants rows_7b 80 --graph --shape llama2-7b --rows 1x512,8x32768,64x4096 \
    --variants auto,v1_n64_S8_w2,v1_n32_S16_w2
gpu_tests 360
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20
echo "done at ${SECONDS}s"
