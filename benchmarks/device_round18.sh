#!/usr/bin/env bash
# Session 11, call 1: v1 merges its splits in the last program of each head (one launch a call; counters
# zero at rest). The whole GPU suite (graph replays of the merge included), then the short rows, v1 (one
# launch) against v1r (the same splits merged by a second kernel) and fp16 SDPA, eager and from graphs.
#   OUT=dir bash benchmarks/device_round18.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
gpu_tests 270
timeout "$(left 200)" python3 benchmarks/bench_decode_attention.py --rows 1x512,1x2048,1x4096 \
    --shapes llama2-7b,llama3.1-8b --impl v1,v1r 2>&1 | tee "$OUT/bench_short.log" | grep -v Warning | tail -12
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
echo "done at ${SECONDS}s"
