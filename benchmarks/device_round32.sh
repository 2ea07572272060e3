#!/usr/bin/env bash
# Session 14, last call: the defaults after rounds 30-31 (sqrt(L / 2) bulk splits in one wave of programs, the
# window's programs, "auto" on the tensor-core bulk above 256 tiles), from CUDA graphs against fp16 SDPA, with the
# rule before them (p2048 / t256) in the same run; then the GPU tests, each result line named (-v) so that a cut
# run still says which failed.
#   OUT=dir LIMIT=s bash benchmarks/device_round32.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
export REPEAT=3
variants small_8b 90 --graph --shape llama3.1-8b --rows 1x512,1x2048,1x4096,1x8192,2x16384,1x32768 \
    --variants auto,gqa_mma,gqa_mma_t256
variants large_8b 75 --graph --shape llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096 --variants auto,gqa_mma_p2048
variants rows_70b 75 --graph --shape llama3.1-70b --rows 1x32768,8x32768,64x4096,128x4096 --variants auto,gqa_mma_p2048
named_gpu_tests 300 tests/test_kernels_decode_attention.py tests/test_kernels_decode_attention_gqa.py \
    tests/test_kernels_static_step.py tests/test_engine.py tests/test_gpu_e2e.py
echo "done at ${SECONDS}s"
