#!/usr/bin/env bash
# Kernel round 7, call 1: the packed path's GPU tests (TMA variants included), a sweep of TMA descriptor
# loads (`tma=True`, pipeline depth `stages`, register caps) against the shipped default, and Nsight Compute
# on the TMA kernel at 8x32K. ROWS, VARIANTS, NCU_KW, NCU_TAG, NCU_SECTIONS, NO_NCU override (call 2: the u fold).
#   OUT=dir bash benchmarks/device_round7.sh
# Its tma / urows variants were removed after these calls (commit 0ce0694 has them): re-run from there.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-420}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "$(left 120)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" -k "packed" \
    tests/test_kernels_decode_attention.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -5
echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 220)" python3 benchmarks/bench_v3_variants.py --rows ${ROWS:-8x32768,16x16384,64x4096,128x4096,1x32768} \
    --variants ${VARIANTS:-packed,p_tma,p_tma_s2,p_tma_s4,p_tma_s6,p_tma_r128,p_tma_r80,p_tma_s4_w8} 2>&1 \
    | tee "$OUT/variants.log" | grep -v Warning
echo "sweep done at ${SECONDS}s"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ] && [ -z "${NO_NCU:-}" ]; then
  timeout "$(left 90)" "$NCU" --clock-control none -k regex:_decode_attn_v3 --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis ${NCU_SECTIONS:-} \
    python3 benchmarks/ncu_v3.py 8x32768 ${NCU_KW:-tma=1} > "$OUT/ncu_${NCU_TAG:-tma}_8x32k.txt" 2>&1
  echo "ncu exit: $? at ${SECONDS}s"
fi
echo "done at ${SECONDS}s"
