#!/usr/bin/env bash
# Session 15, fourth call: the GQA window's splits on a launch of their own (window_launch, "sep": the bulk's launch
# has no shared memory, so 12 / 13 / 16 programs an SM at caps 168 / 152 / 128) against "auto" (one launch, the
# next tile prefetched), from CUDA graphs; then the GQA kernel's GPU tests (-v).
# Its sep variants and the option were removed after it ran (h200_round33.md, round 36); rerun at the commit it names.
#   OUT=dir LIMIT=s bash benchmarks/device_round36.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
export REPEAT=2
variants large_8b 110 --graph --shape llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096 \
    --variants auto,gqa_mma_sep,gqa_mma_sep_r152,gqa_mma_sep_r128,gqa_mma_sep_w1,gqa_mma_sep_w9
variants small_8b 50 --graph --shape llama3.1-8b --rows 1x4096,2x16384,1x32768 --variants auto,gqa_mma_sep,gqa_mma_sep_w9
variants rows_70b 60 --graph --shape llama3.1-70b --rows 8x32768,128x4096 \
    --variants auto,gqa_mma_sep,gqa_mma_sep_r152,gqa_mma_sep_r128
named_gpu_tests 160 tests/test_kernels_decode_attention_gqa.py
echo "done at ${SECONDS}s"
