#!/usr/bin/env bash
# Session 17, second call: the GQA bulk with the lazy rescaling (MMA_LAZY_RESCALE = 8) and the bias MMAs fed straight
# from the 16-byte mins loads (no register moves; the query as 4-byte pairs), against the same build rescaling every
# tile ("tau0"), with and without the compact loads, from CUDA graphs; Nsight on "auto" at 8x32K.
#   OUT=dir LIMIT=s bash benchmarks/device_round45.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
export REPEAT=2
variants large_8b 230 --graph --shape llama3.1-8b --rows 8x32768,16x16384,32x8192,64x4096,128x4096 \
    --variants auto,auto_tau0,gqa_mma_noc,gqa_mma_noc_tau0,gqa_mma_compact,gqa_mma_compact_tau0,gqa_mma_compact_r200
variants small_8b 90 --graph --shape llama3.1-8b --rows 1x512,1x4096,1x32768,2x16384,4x32768 --variants auto,auto_tau0
variants rows_70b 90 --graph --shape llama3.1-70b --rows 1x32768,8x32768,64x4096,128x4096 --variants auto,auto_tau0
with_ncu && ncu_main auto_8x32k 8x32768 auto
echo "done at ${SECONDS}s"
