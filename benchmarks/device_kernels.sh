#!/usr/bin/env bash
# One device call for the kernel issue: GPU kernel tests, the GPU end-to-end tests (padding phases,
# greedy equality), the decode-attention benchmark (v1 vs v3 + v3 sweep) and `kivi profile` at b64 x 4096.
# Logs and JSON under $OUT.   OUT=dir bash benchmarks/device_kernels.sh
source "$(dirname "$0")/device_env.sh"
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention.py tests/test_kernels_quant_pack.py tests/test_gpu_e2e.py 2>&1 \
    | tee "$OUT/gpu_tests.log" | tail -25
echo "gpu tests exit: ${PIPESTATUS[0]}"
timeout "${BENCH_TIMEOUT:-200}" python3 benchmarks/bench_decode_attention.py ${BENCH_ARGS:---rows targets --sweep} \
    2>&1 | tee "$OUT/bench.log" | tail -30
echo "bench exit: ${PIPESTATUS[0]}"
timeout "${PROFILE_TIMEOUT:-150}" python3 -c "from kivi_cli.main import app; app()" profile --arch llama-2-7b \
    --batch 64 --ctx 4096 --gen 16 --bits 2 --prefill-chunk 1024 --json > "$OUT/profile_b64_ctx4096.json" 2> "$OUT/profile.err"
echo "profile exit: $?"; tail -3 "$OUT/profile.err"; head -c 2500 "$OUT/profile_b64_ctx4096.json"
