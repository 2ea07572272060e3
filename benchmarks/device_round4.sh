#!/usr/bin/env bash
# One device call for kernel round 4: every GPU test (kernels, static step, engine, end to end), then the
# decode-attention benchmark (v1 vs v3 vs fp16 SDPA vs dequantize + SDPA, both attention shapes).
# Logs and JSON under $OUT.   OUT=dir bash benchmarks/device_round4.sh
source "$(dirname "$0")/device_env.sh"
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention.py tests/test_kernels_quant_pack.py tests/test_kernels_static_step.py \
    tests/test_engine.py tests/test_gpu_e2e.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
echo "gpu tests exit: ${PIPESTATUS[0]}"
timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/bench_decode_attention.py ${BENCH_ARGS:-} \
    2>&1 | tee "$OUT/bench.log" | grep -v Warning | tail -40
echo "bench exit: ${PIPESTATUS[0]}"
