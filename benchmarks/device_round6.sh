#!/usr/bin/env bash
# First device call of kernel round 6 (prepared in session 4, not yet run): the v3 GPU tests (including
# acc_in_scratch at cap 80), then a sweep of the parked-accumulator variants against the default on the
# target rows. If one wins everywhere, make it the default and re-run device_round5d.sh.
#   OUT=dir bash benchmarks/device_round6.sh
# Its acc_in_scratch variants were removed after this call (commit 4d45246 has them): re-run from there.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-420}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "$(left 170)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -5
echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 200)" python3 benchmarks/bench_v3_variants.py --rows 8x32768,16x16384,64x4096,128x4096 \
    --variants packed,p_r80,p_acc_r96,p_acc_r80,p_acc_r72 2>&1 | tee "$OUT/variants_acc.log" | grep -v Warning
echo "done at ${SECONDS}s"
