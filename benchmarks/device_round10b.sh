#!/usr/bin/env bash
# Session 7's last call: the GPU tests on the final code (the GQA memory test's bound fixed after
# h200_round10/), then short-context v3 variants timed from CUDA graphs at 1 x 512 / 1 x 4096 against fp16
# SDPA timed the same way (issue 3's 1 x 512 target: v3 20.1 us vs SDPA 9.6 in h200_round10/).
#   OUT=dir bash benchmarks/device_round10b.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
gpu_tests 200
timeout "$(left 150)" python3 benchmarks/bench_v3_variants.py --graph --rows 1x512,1x4096 \
    --variants packed,single,bw64_w2,bw64_w2_single,bw32_w1,bw32_w1_single,bw32_w1_S2 2>&1 \
    | tee "$OUT/variants.log" | grep -v Warning
echo "done at ${SECONDS}s"
