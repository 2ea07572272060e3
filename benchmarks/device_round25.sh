#!/usr/bin/env bash
# Session 12, call 3: the defaults after rounds 23-24 (GQA tensor-core bulk: one warp, no cap, value loads where
# ptxas puts them). The whole GPU suite, the default tables (Llama-3.1-8B and 70B) against fp16 SDPA, batch 1
# from CUDA graphs, then the lean engine on the 8B shape at b128 x 4096 (last run with the pair path).
#   OUT=dir bash benchmarks/device_round25.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
gpu_tests 250
bench() {  # bench TAG N ARGS...: bench_decode_attention.py at the defaults, at most N seconds
  local tag=$1 n=$2; shift 2
  timeout "$(left "$n")" python3 benchmarks/bench_decode_attention.py --impl gqa "$@" 2>&1 \
      | tee "$OUT/$tag.log" | grep -v Warning | tail -8
  cp "$OUT/bench_decode_attention.json" "$OUT/$tag.json" 2>/dev/null
  echo "$tag done at ${SECONDS}s"
}
bench bench_gqa_8b 80 --shapes llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096,1x32768
bench bench_gqa_70b 70 --shapes llama3.1-70b --rows 8x32768,64x4096,128x4096,1x32768
timeout "$(left 40)" python3 benchmarks/bench_v3_variants.py --graph --shape llama3.1-8b --rows 1x32768,2x16384 \
    --variants gqa_mma 2>&1 | tee "$OUT/graph_8b.log" | grep -v Warning
timeout "$(left 150)" python3 benchmarks/bench_engine.py --arch llama-3.1-8b kivi:128:4096 fp16:128:4096 2>&1 \
    | tee "$OUT/engine_8b.log" | grep -v Warning | tail -4
echo "done at ${SECONDS}s"
