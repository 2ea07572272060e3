#!/usr/bin/env bash
# After pick_impl moved GQA decode to v3 (h200_round9.md): the GPU tests (memory tests now bound v3's
# workspace), the decode-attention benchmark on both shapes with the new graph-replay columns (GPU time a
# call with the host out of the way: the batch-1 rows), and one engine row with --kernels (the window span).
#   OUT=dir bash benchmarks/device_round10.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
gpu_tests 200
timeout "$(left 200)" python3 benchmarks/bench_decode_attention.py --impl v1,v3 2>&1 \
    | tee "$OUT/bench.log" | grep -v Warning | tail -26
echo "bench done at ${SECONDS}s"
timeout "$(left 120)" python3 benchmarks/bench_engine.py --kernels kivi:128:4096 2>&1 \
    | tee "$OUT/engine_kernels.log" | grep -v Warning | tail -20
echo "done at ${SECONDS}s"
