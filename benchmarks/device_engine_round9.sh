#!/usr/bin/env bash
# Next session's first call (benchmarks/results/decode_v4_plan.md, items 1-2): the GPU tests (v3 on GQA
# included), v1 vs v3 on the Llama-3.1-8B shape, then the engine A/B for round 8's kernel after the value
# stores were padded to 16 rows (issue 6; h200_v3_round8.md): KIVI-2 at b128 x 4096 (a shorter prefill
# than b278's 70 s), interleaved so clock drift cannot favour one side: shipped, round 8, shipped, round 8.
# Before the call, here:
#   mkdir -p .r8 && git show 28735cf:kernels/decode_attention_v3.py > .r8/decode_attention_v3.py
#   (and keep .r8 ignored: echo /.r8/ >> .git/info/exclude)
# then run with carry [".r8"]:
#   OUT=dir bash benchmarks/device_engine_round9.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-580}
[ -f .r8/decode_attention_v3.py ] || { echo "no .r8/decode_attention_v3.py: see this script's header"; exit 2; }
gpu_tests 200
timeout "$(left 100)" python3 benchmarks/bench_decode_attention.py --shapes llama3.1-8b --impl v1,v3 2>&1 \
    | tee "$OUT/bench_gqa.log" | grep -v Warning | tail -14
cp kernels/decode_attention_v3.py /tmp/shipped.py
eng() {
  cp "$2" kernels/decode_attention_v3.py
  timeout "$(left 100)" python3 benchmarks/bench_engine.py kivi:${B:-128}:4096 2>&1 | tee "$OUT/engine_$1.log" \
    | grep -v Warning | tail -1
  mv "$OUT/bench_engine.json" "$OUT/engine_$1.json" 2>/dev/null; echo "$1 done at ${SECONDS}s"
}
eng shipped_1 /tmp/shipped.py
eng r8_1 .r8/decode_attention_v3.py
eng shipped_2 /tmp/shipped.py
eng r8_2 .r8/decode_attention_v3.py
cp /tmp/shipped.py kernels/decode_attention_v3.py
