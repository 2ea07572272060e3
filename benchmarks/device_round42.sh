#!/usr/bin/env bash
# Session 16, last call: the compact loads as the default where one launch runs more than a wave (compact_pays, cap
# 184) against the bulk without them at caps 168 and 184, from CUDA graphs; then the GPU tests (GQA kernel, static
# step, engine, end to end, the memory test).
#   OUT=dir LIMIT=s bash benchmarks/device_round42.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
export REPEAT=2
variants large_8b 90 --graph --shape llama3.1-8b --rows 64x4096,96x4096,128x4096,8x32768 \
    --variants auto,gqa_mma_noc,gqa_mma_noc_r184
variants rows_70b 60 --graph --shape llama3.1-70b --rows 64x4096,128x4096 --variants auto,gqa_mma_noc,gqa_mma_noc_r184
named_gpu_tests 330 tests/test_kernels_decode_attention_gqa.py tests/test_kernels_static_step.py tests/test_engine.py \
    tests/test_gpu_e2e.py tests/test_kernels_decode_attention.py::test_gpu_no_dequantized_copy_in_memory
echo "done at ${SECONDS}s"
