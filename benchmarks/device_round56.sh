#!/usr/bin/env bash
# Session 19, first call: v1's short-call tile rule (`_short_tiles`: waves x tile tokens; half tiles in the value
# window's region where they add no wave) against the tilings it chooses between, both shapes, from CUDA graphs; then
# the decode-attention file's GPU tests.
#   OUT=dir LIMIT=s bash benchmarks/device_round56.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
export REPEAT=3
variants short_7b 130 --graph --shape llama2-7b --rows 1x512,1x1024,2x512 \
    --variants auto,auto_nowinhalf,v1_n64_w4,v1_n32_w4,v1_w2
variants short_8b 100 --graph --shape llama3.1-8b --rows 1x512,1x1024,1x2048 \
    --variants auto,auto_nowinhalf,v1_n64_w4,v1_n32_w4
named_gpu_tests 150 tests/test_kernels_decode_attention.py
echo "done at ${SECONDS}s"
