#!/usr/bin/env bash
# Session 15, first call: the GQA tensor-core bulk prefetching the group PF tiles ahead into L2 (mma_prefetch;
# decode_attention_gqa_mma._prefetch_tile), from CUDA graphs against fp16 SDPA: PF 0 (today) / 1 / 2 / 4 / 8, with
# the window's split off tensor cores (rd0: no shared memory, so 12-16 programs an SM) and other split counts at
# batch 1; then the GQA kernel's GPU tests (-v, each failure named).
#   OUT=dir LIMIT=s bash benchmarks/device_round33.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
export REPEAT=2
variants large_8b 170 --graph --shape llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096 \
    --variants gqa_mma,gqa_mma_pf1,gqa_mma_pf2,gqa_mma_pf4,gqa_mma_pf8,gqa_mma_pf2_rd0,gqa_mma_pf4_rd0_r128
variants small_8b 130 --graph --shape llama3.1-8b --rows 1x512,1x4096,2x16384,1x32768 \
    --variants auto,gqa_mma,gqa_mma_pf2,gqa_mma_pf4,gqa_mma_pf8,gqa_mma_pf4_t512,gqa_mma_pf8_t1024
variants rows_70b 100 --graph --shape llama3.1-70b --rows 1x32768,8x32768,128x4096 \
    --variants gqa_mma,gqa_mma_pf2,gqa_mma_pf4,gqa_mma_pf8
named_gpu_tests 200 tests/test_kernels_decode_attention_gqa.py
echo "done at ${SECONDS}s"
