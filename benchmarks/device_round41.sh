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
if with_ncu; then
  S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats"
  KERNEL=_decode_attn_gqa_kernel ncu_v3 60 "$S" 8x32768 shape=llama3.1-8b variant=gqa_mma_compact \
      > "$OUT/ncu_compact_8x32k.txt" 2>&1
  echo "ncu exit: $? at ${SECONDS}s"
  grep -E "Duration|DRAM Throughput|L1/TEX Hit|L2 Hit|L1/TEX Cache|L2 Cache Throughput|Achieved Active|Warp Cycles Per Issued|Registers Per" \
      "$OUT/ncu_compact_8x32k.txt"
fi
echo "done at ${SECONDS}s"
