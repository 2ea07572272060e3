#!/usr/bin/env bash
# Session 18, first call: programmatic dependent launch (kernels/pdl.py) on the issue's rows, from CUDA graphs: "auto"
# with it, without it, and with the call's first launch as a dependent too (8B, then Llama-2 shape); then the GPU tests
# of both attention kernel files and the engine (CUDA graphs with PDL edges).
#   OUT=dir LIMIT=s bash benchmarks/device_round51.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-590}
export REPEAT=2
ROWS=1x512,1x32768,8x32768,16x16384,64x4096,128x4096
variants rows_8b 170 --graph --shape llama3.1-8b --rows $ROWS --variants auto,auto_nopdl,auto_pdlfirst
variants rows_7b 130 --graph --shape llama2-7b --rows $ROWS --variants auto,auto_nopdl
named_gpu_tests 280 tests/test_kernels_decode_attention_gqa.py tests/test_kernels_decode_attention.py \
    tests/test_engine.py
echo "done at ${SECONDS}s"
