#!/usr/bin/env bash
# Where a lean-engine step's GPU time goes (issue 6), after pick_impl moved GQA decode to v3: the GPU tests
# (auto now runs v3 on GQA), then each side at its measured batch at ctx 4096 (h200_engine_round7.md: 5%
# under the largest batch) with per-kernel times from torch.profiler (bench_engine.py --kernels).
#   OUT=dir bash benchmarks/device_engine_kernels.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-560}
gpu_tests 200
timeout "$(left 330)" python3 benchmarks/bench_engine.py --kernels kivi:278:4096 fp16:59:4096 2>&1 \
    | tee "$OUT/engine_kernels.log" | grep -v Warning | tail -40
echo "done at ${SECONDS}s"
