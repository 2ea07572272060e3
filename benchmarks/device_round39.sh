#!/usr/bin/env bash
# Session 16, second call: Nsight (round 38) put the GQA bulk's stalls on latency (wait 28%, long scoreboard 25% of
# samples) at 7.5 warps an SM, with a ~28 KB L1 beside 9 x 23 KB of shared memory. Here: the prefetch into L1
# (mma_prefetch_level 1 / 3), the window's splits on their own launch after the bulk's (no shared memory in the
# bulk: ~200 KB of L1, 12 programs an SM), more splits and cap 128 (16 an SM); from CUDA graphs, then Nsight on one.
# Its pfl* variants (mma_prefetch_level) left with the option after commit 80f5f6b; the sep ones are window_launch now.
#   OUT=dir LIMIT=s bash benchmarks/device_round39.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
export REPEAT=2
variants large_8b 330 --graph --shape llama3.1-8b --rows 8x32768,64x4096,128x4096 \
    --variants auto,gqa_mma_pfl1,gqa_mma_pfl3,gqa_mma_sep_pfl2,gqa_mma_sep_pfl1,gqa_mma_sep_pfl3,gqa_mma_sep_pfl1_pf2,gqa_mma_sep_pfl1_S24,gqa_mma_sep_pfl2_S24,gqa_mma_sep_pfl1_r128,gqa_mma_sep_pfl1_r128_S32
variants small_8b 80 --graph --shape llama3.1-8b --rows 1x32768,2x16384 \
    --variants auto,gqa_mma_pfl1,gqa_mma_pfl3,gqa_mma_sep_pfl1,gqa_mma_sep_pfl3
with_ncu && ncu_main sep_pfl1_8x32k 8x32768 gqa_mma_sep_pfl1_S24
echo "done at ${SECONDS}s"
