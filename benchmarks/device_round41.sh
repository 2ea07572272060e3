#!/usr/bin/env bash
# Session 16, fourth call: the bulk's compact loads (mma_compact: each key and value word of a group loaded once a
# warp and shuffled to the lanes that use it; the next tile's key words, scales and mins loaded a tile ahead into
# the registers the duplicated loads took), with and without the L2 prefetch and at caps 184 / 200, against "auto",
# from CUDA graphs; then Nsight on the compact build at 8x32K.
#   OUT=dir LIMIT=s bash benchmarks/device_round41.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-500}
export REPEAT=2
variants large_8b 230 --graph --shape llama3.1-8b --rows 8x32768,16x16384,32x8192,64x4096,128x4096 \
    --variants auto,gqa_mma_compact,gqa_mma_compact_pf0,gqa_mma_compact_r184,gqa_mma_compact_r200,gqa_mma_compact_r184_pf0,gqa_mma_compact_one
variants small_8b 70 --graph --shape llama3.1-8b --rows 1x32768,2x16384,1x8192 \
    --variants auto,gqa_mma_compact,gqa_mma_compact_pf0
variants rows_70b 60 --graph --shape llama3.1-70b --rows 8x32768,64x4096 --variants auto,gqa_mma_compact,gqa_mma_compact_pf0
with_ncu && ncu_main compact_8x32k 8x32768 gqa_mma_compact
echo "done at ${SECONDS}s"
