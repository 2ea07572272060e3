#!/usr/bin/env bash
# Session 9, call 6: the launcher now picks the tensor-core bulk on default calls (before, `packed` was
# resolved first and kept it off; call 5's table ran the packed path). GPU suite and the Llama-2 table.
#   OUT=dir bash benchmarks/device_round13e.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
gpu_tests 250
timeout "$(left 120)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3 2>&1 \
    | tee "$OUT/bench_mha.log" | grep -v Warning | tail -10
echo "done at ${SECONDS}s"
