#!/usr/bin/env bash
# Session 17, third call: "auto" after the bulk's lazy rescaling (not with the compact loads) and bias-MMA change,
# on the issue's rows, from CUDA graphs; then the GPU tests (the GQA kernel file, the static step, the engine, end to
# end, the memory test).
#   OUT=dir LIMIT=s bash benchmarks/device_round46.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
export REPEAT=2
variants rows_8b 110 --graph --shape llama3.1-8b --rows 1x512,1x32768,8x32768,16x16384,64x4096,128x4096 \
    --variants auto,gqa_mma_noc
variants rows_70b 60 --graph --shape llama3.1-70b --rows 8x32768,64x4096,128x4096 --variants auto
named_gpu_tests 400 tests/test_kernels_decode_attention_gqa.py tests/test_kernels_static_step.py tests/test_engine.py \
    tests/test_gpu_e2e.py tests/test_kernels_decode_attention.py::test_gpu_no_dequantized_copy_in_memory
echo "done at ${SECONDS}s"
