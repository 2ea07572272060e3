#!/usr/bin/env bash
# Next session's first call: GQA follow-ups of session 7 (h200_round10.md). The GPU tests; v3's fp32 path
# (bf16 / 4-bit, which pick_impl now also sends to v3 on GQA) against v1 on the Llama-3.1-8B shape; and the
# lean engine on Llama-3.1-8B (GQA 32/8) at equal batches with per-kernel times.
#   OUT=dir bash benchmarks/device_round11.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
gpu_tests 200
timeout "$(left 60)" python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_kernels_decode_attention_gqa.py 2>&1 | tail -3
timeout "$(left 120)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-8b --impl v1,v3,v3f,gqa \
    --rows 8x32768,64x4096 2>&1 | tee "$OUT/bench_gqa.log" | grep -v Warning | tail -12
timeout "$(left 240)" python3 benchmarks/bench_engine.py --arch llama-3.1-8b --kernels kivi:128:4096 fp16:128:4096 \
    2>&1 | tee "$OUT/engine_llama3.log" | grep -v Warning | tail -30
echo "done at ${SECONDS}s"
