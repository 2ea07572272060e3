#!/usr/bin/env bash
# Device call 3 of round 5: GPU tests (kernels, engine, end to end) with the new split rule and register
# cap, the split-count sweep (bench_v3_variants.py), the decode-attention benchmark, then KIVI's step time
# at b278 x 4096 (the batch --find-max-batch measured at). Each step gets what is left of LIMIT seconds.
#   OUT=dir bash benchmarks/device_round5c.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-550}
xd=(); python3 -c "import xdist" 2>/dev/null && xd=(-n "${XDIST:-8}")
timeout "$(left 170)" python3 -m pytest -m gpu -q -p no:cacheprovider "${xd[@]}" \
    tests/test_kernels_decode_attention.py tests/test_kernels_quant_pack.py tests/test_kernels_static_step.py \
    tests/test_engine.py tests/test_gpu_e2e.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -v Warn | tail -6
echo "gpu tests exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 100)" python3 benchmarks/bench_v3_variants.py --rows 8x32768,16x16384,1x32768,64x4096,128x4096 \
    --variants packed,S_round4,S1,S2,S3,S4,S8,S16 2>&1 | tee "$OUT/variants_splits.log" | grep -v Warning
mv "$OUT/v3_variants.json" "$OUT/v3_variants_splits.json" 2>/dev/null; echo "sweep done at ${SECONDS}s"
timeout "$(left 250)" python3 benchmarks/bench_decode_attention.py 2>&1 | tee "$OUT/bench.log" | grep -v Warning | tail -32
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
timeout "$(left 100)" python3 benchmarks/bench_engine.py kivi:278:4096 2>&1 | tee "$OUT/bench_engine_b278.log" \
    | grep -v Warning | tail -3
mv "$OUT/bench_engine.json" "$OUT/bench_engine_b278.json" 2>/dev/null; echo "done at ${SECONDS}s"
