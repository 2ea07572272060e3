#!/usr/bin/env bash
# Session 15, last call: the defaults after rounds 33-34 (the GQA tensor-core bulk prefetching the next tile into
# L2; MHA without it), "auto" against the build before (gqa_mma_pf0) from CUDA graphs with fp16 SDPA, on the
# issue's rows; then the GPU tests of the GQA kernel, quant-pack, static step, engine and end to end (-v).
#   OUT=dir LIMIT=s bash benchmarks/device_round35.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
export REPEAT=2
variants small_8b 80 --graph --shape llama3.1-8b --rows 1x512,1x2048,1x4096,1x8192,2x16384,1x32768 \
    --variants auto,gqa_mma_pf0
variants large_8b 70 --graph --shape llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096 --variants auto,gqa_mma_pf0
variants rows_70b 70 --graph --shape llama3.1-70b --rows 1x32768,8x32768,64x4096,128x4096 --variants auto,gqa_mma_pf0
named_gpu_tests 300 tests/test_kernels_decode_attention_gqa.py tests/test_kernels_quant_pack.py \
    tests/test_kernels_static_step.py tests/test_engine.py tests/test_gpu_e2e.py
echo "done at ${SECONDS}s"
