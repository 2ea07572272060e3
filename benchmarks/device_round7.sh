#!/usr/bin/env bash
# Kernel round 7, call 1: the packed path's GPU tests (TMA variants included), a sweep of TMA descriptor
# loads (`tma=True`, pipeline depth `stages`, register caps) against the shipped default, and Nsight Compute
# on the TMA kernel at 8x32K. ROWS, VARIANTS, NCU_KW, NCU_TAG, NCU_SECTIONS, NO_NCU override (call 2: the u fold).
#   OUT=dir bash benchmarks/device_round7.sh
# Its tma / urows variants were removed after these calls (commit 0ce0694 has them): re-run from there.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-420}
kernel_tests "packed" 120
sweep "${ROWS:-8x32768,16x16384,64x4096,128x4096,1x32768}" \
    "${VARIANTS:-packed,p_tma,p_tma_s2,p_tma_s4,p_tma_s6,p_tma_r128,p_tma_r80,p_tma_s4_w8}" 220
if with_ncu; then
  # shellcheck disable=SC2086
  ncu_v3 90 "--section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats
    --section MemoryWorkloadAnalysis ${NCU_SECTIONS:-}" 8x32768 ${NCU_KW:-tma=1} \
    > "$OUT/ncu_${NCU_TAG:-tma}_8x32k.txt" 2>&1
  echo "ncu exit: $? at ${SECONDS}s"
fi
echo "done at ${SECONDS}s"
