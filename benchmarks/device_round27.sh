#!/usr/bin/env bash
# Session 13, call 3: the defaults after round 26 (the window's split on tensor cores, REST_DOT; cap 168) and
# the tensor-core bulk refusing non-dense value rows (round 27's faults). The whole GPU suite, the default
# tables (Llama-3.1-8B and 70B) against fp16 SDPA, batch 1 from CUDA graphs, then the lean engine on the 8B
# shape at b128 x 4096. The device returns at most 8 files: tables go to stdout, JSON under $OUT.
#   OUT=dir bash benchmarks/device_round27.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-570}
gpu_tests 250
bench() {  # bench TAG N ARGS...: bench_decode_attention.py at the defaults, at most N seconds; JSON under TAG
  local tag=$1 n=$2; shift 2
  timeout "$(left "$n")" python3 benchmarks/bench_decode_attention.py --impl gqa "$@" 2>&1 \
      | grep -v Warning | tail -7
  mv "$OUT/bench_decode_attention.json" "$OUT/$tag.json" 2>/dev/null
  echo "$tag done at ${SECONDS}s"
}
bench bench_gqa_8b 80 --shapes llama3.1-8b --rows 8x32768,16x16384,64x4096,128x4096,1x32768
bench bench_gqa_70b 70 --shapes llama3.1-70b --rows 8x32768,64x4096,128x4096,1x32768
for s in 8b 70b; do
  timeout "$(left 35)" python3 benchmarks/bench_v3_variants.py --graph --shape "llama3.1-$s" \
      --rows 1x32768,2x16384,1x512 --variants gqa_mma 2>&1 | grep -v -e Warning -e "copy bandwidth"
  mv "$OUT/v3_variants.json" "$OUT/graph_$s.json" 2>/dev/null
done
timeout "$(left 110)" python3 benchmarks/bench_engine.py --arch llama-3.1-8b kivi:128:4096 fp16:128:4096 2>&1 \
    | grep -v Warning | tail -3
echo "done at ${SECONDS}s"
