#!/usr/bin/env bash
# Session 15, last (short) call: with the bulk's prefetch on, whether the rules measured without it still hold: the
# load order (mma_early) and the split counts (p2048: the 2048-program rule; S32; t128 / t512 at batch 1), from
# CUDA graphs against "auto".
#   OUT=dir LIMIT=s bash benchmarks/device_round37.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-170}
export REPEAT=2
variants large_8b 90 --graph --shape llama3.1-8b --rows 8x32768,64x4096 \
    --variants auto,gqa_mma_r168_early,gqa_mma_p2048,gqa_mma_S32
variants small_8b 60 --graph --shape llama3.1-8b --rows 1x32768 --variants auto,gqa_mma_r168_early,gqa_mma_t128,gqa_mma_t512
echo "done at ${SECONDS}s"
