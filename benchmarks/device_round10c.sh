#!/usr/bin/env bash
# Session 7's last call: the end-to-end GPU tests again (the near-tie bound after h200_round10b/), then
# the short-context v3 variants from CUDA graphs (round 10b's sweep stopped at SDPA's capture: cuDNN
# allocates on its first call, now made before the capture).
#   OUT=dir bash benchmarks/device_round10c.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-300}
timeout "$(left 120)" python3 -m pytest -m gpu -q -p no:cacheprovider -rA tests/test_gpu_e2e.py 2>&1 \
    | tee "$OUT/gpu_e2e.log" | grep -E "differing|passed|failed" | tail -8
timeout "$(left 150)" python3 benchmarks/bench_v3_variants.py --graph --rows 1x512,1x4096 \
    --variants packed,single,bw64_w2,bw64_w2_single,bw32_w1,bw32_w1_single,bw32_w1_S2 2>&1 \
    | tee "$OUT/variants.log" | grep -v Warning
echo "done at ${SECONDS}s"
