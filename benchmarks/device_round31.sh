#!/usr/bin/env bash
# Session 14: the window region split over several programs a kv head (decode_attention_gqa win_splits /
# window_splits) and 256 tokens a bulk split at batch 1 (MMA_SPLIT_TOKENS, from round 30). The GPU tests first
# (the whole set: the kernels' shared _rest_tiles and the bulk's loop lost their stages arguments), then batch 1
# from CUDA graphs against W, then the large rows (the rule gives W = 1 there) with W = 2, 3.
#   OUT=dir LIMIT=s bash benchmarks/device_round31.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
gpu_tests 230
grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -20
export REPEAT=3
W=auto,gqa_mma,gqa_mma_t64,gqa_mma_t128,gqa_mma_w1,gqa_mma_w3,gqa_mma_w4,gqa_mma_w5,gqa_mma_w9,gqa_mma_t128_w3,gqa_mma_t128_w9,gqa_mma_t512_w3
variants graph_8b 130 --graph --shape llama3.1-8b --rows 1x512,1x2048,1x4096,1x8192,2x16384,1x32768 --variants "$W"
variants graph_70b 60 --graph --shape llama3.1-70b --rows 1x4096,1x32768 \
    --variants auto,gqa_mma,gqa_mma_w1,gqa_mma_w3,gqa_mma_w5,gqa_mma_w9
variants large_8b 80 --shape llama3.1-8b --rows 8x32768,64x4096,128x4096 --variants gqa_mma,gqa_mma_w2,gqa_mma_w3
echo "done at ${SECONDS}s"
