#!/usr/bin/env bash
# Session 16, third call: the window launch rule (window_launch_pays: the window's splits on their own launch where
# the one-launch grid is one wave and batch x kv heads >= 64; the bulk then fills 12 programs an SM) against one
# launch ("gqa_mma_one", session 15's default) from CUDA graphs on the rows it takes and on two it leaves, 8B and
# 70B; split counts beside the rule's at 8x32K; then the GPU tests (GQA kernel, the memory test, static step, engine).
#   OUT=dir LIMIT=s bash benchmarks/device_round40.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-570}
export REPEAT=2
variants large_8b 150 --graph --shape llama3.1-8b --rows 8x32768,16x16384,4x32768,16x8192,32x8192,64x4096,128x4096 \
    --variants auto,gqa_mma_one
variants tune_8b 50 --graph --shape llama3.1-8b --rows 8x32768 --variants gqa_mma_sep_S20,gqa_mma_sep_S32,gqa_mma_sep_S48
variants rows_70b 80 --graph --shape llama3.1-70b --rows 8x32768,16x16384,32x8192,64x4096 --variants auto,gqa_mma_one
named_gpu_tests 260 tests/test_kernels_decode_attention_gqa.py tests/test_kernels_static_step.py tests/test_engine.py \
    tests/test_kernels_decode_attention.py::test_gpu_no_dequantized_copy_in_memory
echo "done at ${SECONDS}s"
