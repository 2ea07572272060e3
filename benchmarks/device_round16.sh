#!/usr/bin/env bash
# Session 10, call 4: mma_shfl is the default tensor-core bulk (cap 168, 2048-program split rule), its warp
# max by Triton's reduction (the asm butterfly was wrong with a padding mask: debug_sh_valid.py). The whole
# GPU suite, then the Llama-2 table (default calls) and the GQA shapes' rows (unchanged kernels, same run).
#   OUT=dir bash benchmarks/device_round16.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-540}
gpu_tests 260
timeout "$(left 140)" python3 benchmarks/bench_decode_attention.py --shapes llama2-7b --impl v3 2>&1 \
    | tee "$OUT/bench_mha.log" | grep -v Warning | tail -10
echo "bench exit: ${PIPESTATUS[0]} at ${SECONDS}s"
python3 benchmarks/debug_sh_valid.py 2>&1 | grep -v Warn | head -3
echo "done at ${SECONDS}s"
