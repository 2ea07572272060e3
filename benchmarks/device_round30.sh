#!/usr/bin/env bash
# Session 14: where the GQA tensor-core kernel's time goes, by sweeps of what the launcher chooses.
# Round 29 (h200_round29) refuted the cp.async stages (2.3x slower). Two hypotheses left, each one sweep:
# 1. Batch 1 is bound by a bulk split's length (MMA_SPLIT_TOKENS = 512 tokens, ~16 serial tiles of one warp:
#    1x8192 34 us against SDPA's 19), not by the window's split since REST_DOT: "t<T>" = L // T splits.
# 2. Large batch is bound by programs in flight: the window's split's tl.dot takes 23 KB of shared memory, so 9
#    programs an SM; rest_dot=False needs 512 B (12 an SM at cap 168, 16 at 128). Plus whole waves of programs
#    ("S<n>" bulk splits).
# Every variant is timed 3 times in turn (ABCABC) and the median reported.
#   OUT=dir LIMIT=s bash benchmarks/device_round30.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
export REPEAT=3
T=auto,gqa_mma,gqa_mma_t64,gqa_mma_t128,gqa_mma_t256,gqa_mma_t1024,packed
variants graph_8b 130 --graph --shape llama3.1-8b --rows 1x512,1x2048,1x4096,1x8192,2x16384,1x32768 --variants "$T"
variants graph_70b 70 --graph --shape llama3.1-70b --rows 1x4096,1x8192,1x32768 --variants "$T"
S=gqa_mma,gqa_mma_rd0,gqa_mma_rd0_r128,gqa_mma_rd0_r144
S=$S,gqa_mma_S2,gqa_mma_S3,gqa_mma_S4,gqa_mma_S6,gqa_mma_S8,gqa_mma_S12,gqa_mma_S16,gqa_mma_S18,gqa_mma_S24
S=$S,gqa_mma_S36,gqa_mma_S48,gqa_mma_S64
S=$S,gqa_mma_rd0_S3,gqa_mma_rd0_S4,gqa_mma_rd0_S6,gqa_mma_rd0_S16,gqa_mma_rd0_S24,gqa_mma_rd0_S48
variants large_8b 170 --shape llama3.1-8b --rows 8x32768,64x4096,128x4096,16x16384 --variants "$S"
variants large_70b 120 --shape llama3.1-70b --rows 8x32768,64x4096,128x4096 \
    --variants gqa_mma,gqa_mma_rd0,gqa_mma_rd0_r128,gqa_mma_rd0_r144,gqa_mma_S3,gqa_mma_S18,gqa_mma_S48,gqa_mma_rd0_S3,gqa_mma_rd0_S48
echo "done at ${SECONDS}s"
