#!/usr/bin/env bash
# Session 19, third call: where an eager call's host time goes (cProfile, benchmarks/profile_host_eager.py: round 57's
# eager calls took 115-400 us of host time against 7-95 us on the GPU), and Llama-2 1x512 at v1's rule, 2 warps and
# tiles of 32 again (5 turns).
#   OUT=dir LIMIT=s bash benchmarks/device_round58.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-300}
timeout "$(left 120)" python3 benchmarks/profile_host_eager.py 2>&1 | grep -v Warning | tee "$OUT/host_eager.log" \
    | grep -E "^==|tottime|jit.py|driver|decode_attention|_check|pick_impl|{built-in" | head -80
export REPEAT=5
variants short_7b 80 --graph --shape llama2-7b --rows 1x512 --variants auto,v1_w2,v1_n32_w4,v1_n64_S8_w8
echo "done at ${SECONDS}s"
