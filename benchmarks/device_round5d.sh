#!/usr/bin/env bash
# Device call 4 of round 5 (the last of the session's budget): GPU tests of the kernels and the engine with
# the measured split rule (SPLIT_PROGRAMS), then the decode-attention benchmark on the Llama-2 shape (v3 =
# the defaults, v3f = the fp32 path; v1 and the GQA shape are unchanged since h200_v3_round5/final).
#   OUT=dir bash benchmarks/device_round5d.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-330}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "$(left 170)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention.py tests/test_engine.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -5
echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 200)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3,v3f 2>&1 \
    | tee "$OUT/bench.log" | grep -v Warning | tail -16
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
