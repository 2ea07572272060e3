#!/usr/bin/env bash
# One device call for kernel round 5: every GPU test (packed path now the k2v2 fp16 default), then the
# sweep of v3's tuning keywords then (prefetch, async key stages, register caps, warps: commit 67cf731 has them).
# Logs and JSON under $OUT.   OUT=dir bash benchmarks/device_round5.sh
source "$(dirname "$0")/device_env.sh"
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "${TEST_TIMEOUT:-220}" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention.py tests/test_kernels_quant_pack.py tests/test_kernels_static_step.py \
    tests/test_engine.py tests/test_gpu_e2e.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -25
echo "gpu tests exit: ${PIPESTATUS[0]}"
timeout "${SWEEP_TIMEOUT:-300}" python3 benchmarks/bench_v3_variants.py ${SWEEP_ARGS:-} \
    2>&1 | tee "$OUT/variants.log" | grep -v Warning
echo "sweep exit: ${PIPESTATUS[0]}"
