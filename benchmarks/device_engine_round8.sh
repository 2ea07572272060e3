#!/usr/bin/env bash
# Engine A/B after kernel round 8 (issue 6): KIVI-2 at b278 x 4096 with round 7's kernel (commit 87357ad's
# decode_attention_v3.py, carried in .r7/), round 8's at cap 96, and round 8's as shipped (cap 128).
#   OUT=dir bash benchmarks/device_engine_round8.sh     (carry .r7)
# Run from commit 28735cf (round 8 shipped there); .r7/ holds `git show 87357ad:kernels/decode_attention_v3.py`.
# The three ran in this order, each right after its own 70 s prefill: an interleaved order would rule out
# the GPU's clock drifting over the call.
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-330}
eng() {
  timeout "$(left 110)" python3 benchmarks/bench_engine.py kivi:278:4096 2>&1 | tee "$OUT/engine_$1.log" \
    | grep -v Warning | tail -1
  mv "$OUT/bench_engine.json" "$OUT/engine_$1.json" 2>/dev/null; echo "$1 done at ${SECONDS}s"
}
cp kernels/decode_attention_v3.py /tmp/r8.py
cp .r7/decode_attention_v3.py kernels/decode_attention_v3.py && eng r7
cp /tmp/r8.py kernels/decode_attention_v3.py
sed -i 's/^MAXNREG_PACKED = 128/MAXNREG_PACKED = 96/' kernels/decode_attention_v3.py && eng r8_cap96
cp /tmp/r8.py kernels/decode_attention_v3.py && eng r8
