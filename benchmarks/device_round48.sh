#!/usr/bin/env bash
# Session 17, last call: the window's own launch at 64-128 x 4096 with splits that fill one wave of 12 programs an SM
# (S3 at 64 x 8 pairs, S2 at 96 x 8), against "auto" (one launch of two waves, compact loads), from CUDA graphs.
#   OUT=dir LIMIT=s bash benchmarks/device_round48.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-200}
export REPEAT=2
variants wave_8b 120 --graph --shape llama3.1-8b --rows 64x4096,96x4096,128x4096 \
    --variants auto,gqa_mma_sep_S1,gqa_mma_sep_S2,gqa_mma_sep_S3,gqa_mma_sep_S4
variants wave_70b 60 --graph --shape llama3.1-70b --rows 64x4096 --variants auto,gqa_mma_sep_S2,gqa_mma_sep_S3
echo "done at ${SECONDS}s"
