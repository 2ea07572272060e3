#!/usr/bin/env bash
# Session 15, second call: MHA's tensor-core bulk (mma_shfl) prefetching the next tiles into L2 (Llama-2-7B shape),
# and the GQA bulk's prefetch rule (prefetch_tiles: 2 tiles ahead for splits of <= 512 tokens, else 1) against fixed
# distances on batch-1 and middle rows; from CUDA graphs against fp16 SDPA. Then the decode-attention GPU tests.
# Its mma_sh_pf variants and MHA's option were removed after it ran (h200_round33.md, round 34).
#   OUT=dir LIMIT=s bash benchmarks/device_round34.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
export REPEAT=2
variants mha_large 130 --graph --rows 8x32768,16x16384,64x4096,128x4096 \
    --variants auto,mma_sh_pf1,mma_sh_pf2,mma_sh_pf4,mma_sh_w4_pf0,mma_sh_w4_pf1
variants mha_small 50 --graph --rows 1x512,2x16384,1x32768 --variants auto,mma_sh_pf0,mma_sh_pf1,mma_sh_pf2
variants gqa_rule 120 --graph --shape llama3.1-8b --rows 1x4096,1x8192,2x16384,1x32768,4x8192,8x4096 \
    --variants auto,gqa_mma_pf0,gqa_mma_pf1,gqa_mma_pf2,gqa_mma_pf3
named_gpu_tests 260 tests/test_kernels_decode_attention.py tests/test_kernels_decode_attention_gqa.py
echo "done at ${SECONDS}s"
