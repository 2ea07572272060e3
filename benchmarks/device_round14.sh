#!/usr/bin/env bash
# Session 10's first call (branch mma-shfl): the tensor-core bulk with its value operand by shuffles from
# the key lanes (mma_shfl; no scratch row, no fold pass, no barrier a tile). Its GPU tests, then the variants
# against the default (mma, 2 warps) and the packed path; then Nsight Compute on both mma paths at 8x32K
# (the tensor-core bulk was never profiled: stall reasons and the top stall sites).
#   OUT=dir bash benchmarks/device_round14.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
kernel_tests "mma" 200
sweep 8x32768,64x4096,128x4096,16x16384,1x32768 packed,mma_w2,mma_sh,mma_sh_r168,mma_sh_w1,mma_sh_w4 180
if with_ncu; then
  for v in "mma num_warps=2 mma=1" "mmash num_warps=2 mma=1 mma_shfl=1"; do
    set -- $v; tag=$1; shift
    # shellcheck disable=SC2086
    ncu_v3 80 "--section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats
      --section MemoryWorkloadAnalysis --section SourceCounters --section LaunchStats" 8x32768 "$@" \
      > "$OUT/ncu_${tag}_8x32k.txt" 2>&1
    echo "ncu $tag exit: $? at ${SECONDS}s"
  done
fi
echo "done at ${SECONDS}s"
