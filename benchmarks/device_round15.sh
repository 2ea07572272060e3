#!/usr/bin/env bash
# Session 10, call 2 (branch mma-shfl): key loads coalesced (a word row's 4 lanes read 64 contiguous bytes),
# key biases from the B lanes (no [groups, D] min tile, no cross-warp sum), and with mma_shfl a running max
# a warp (no shared memory, no barrier in the loop). GPU tests of the mma paths, then caps, warps and splits.
#   OUT=dir bash benchmarks/device_round15.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-520}
kernel_tests "mma" 150
sweep 8x32768,64x4096,128x4096,16x16384 \
  mma_w2,mma_w2_r168,mma_sh,mma_sh_r144,mma_sh_r168,mma_sh_r184,mma_sh_r200,mma_sh_w1_r184,mma_sh_r168_S2x,mma_sh_r168_Sh 260
if with_ncu; then
  ncu_v3 60 "--section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats
    --section MemoryWorkloadAnalysis --section SourceCounters" 8x32768 num_warps=2 mma=1 mma_shfl=1 maxnreg=168 \
    > "$OUT/ncu_mmash_r168_8x32k.txt" 2>&1
  echo "ncu exit: $? at ${SECONDS}s"
fi
echo "done at ${SECONDS}s"
