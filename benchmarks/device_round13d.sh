#!/usr/bin/env bash
# Session 9, call 5: the benchmark table on the Llama-2 shape with v3's launcher defaults (the tensor-core
# bulk where default_mma picks it; call 4's table passed tuning keywords, which keep the packed path).
#   OUT=dir bash benchmarks/device_round13d.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-200}
timeout "$(left 150)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3 2>&1 \
    | tee "$OUT/bench_mha.log" | grep -v Warning | tail -10
echo "done at ${SECONDS}s"
