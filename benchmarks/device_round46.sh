#!/usr/bin/env bash
# Session 17, third call: the GPU tests after the bulk's lazy rescaling and bias-MMA change (the GQA kernel file, the
# static step, the engine, end to end, the memory test).
#   OUT=dir LIMIT=s bash benchmarks/device_round46.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
named_gpu_tests 540 tests/test_kernels_decode_attention_gqa.py tests/test_kernels_static_step.py tests/test_engine.py \
    tests/test_gpu_e2e.py tests/test_kernels_decode_attention.py::test_gpu_no_dequantized_copy_in_memory
echo "done at ${SECONDS}s"
