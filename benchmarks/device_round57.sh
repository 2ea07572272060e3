#!/usr/bin/env bash
# Session 19, second call: the issue's benchmark (benchmarks/bench_decode_attention.py) on what a model's calls run
# ("auto": pick_impl and the kernels' own rules), its six rows on the Llama-2-7B, Llama-3.1-8B and -70B shapes, fp16
# SDPA and dequantize-then-SDPA in the same run; then every GPU test.
#   OUT=dir LIMIT=s bash benchmarks/device_round57.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-590}
timeout "$(left 220)" python3 benchmarks/bench_decode_attention.py --impl auto \
    --shapes llama2-7b,llama3.1-8b,llama3.1-70b 2>&1 | grep -v Warning > "$OUT/bench.log"
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
sed -n '/^copy bandwidth (read+write)/,$p' "$OUT/bench.log"
grep -E "^quantize" "$OUT/bench.log"
gpu_tests 360
grep -E "FAILED|ERROR" "$OUT/gpu_tests.log" | head -20
echo "done at ${SECONDS}s"
