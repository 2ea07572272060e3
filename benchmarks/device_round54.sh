#!/usr/bin/env bash
# Session 18, fourth call: v1's short-call tiles (`_short_tiles`: 32 tokens at 4 or 2 warps) against the other
# choices at 1x512-1x2048, both shapes, from CUDA graphs; then the GPU tests of the decode-attention file (v1's
# default changed; the PDL graph test) and end to end.
#   OUT=dir LIMIT=s bash benchmarks/device_round54.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-330}
export REPEAT=2
V=auto,v1_n64_w4,v1_n32_w4,v1_n32_w2
variants short_8b 60 --graph --shape llama3.1-8b --rows 1x512,1x1024,1x2048 --variants $V
variants short_7b 50 --graph --shape llama2-7b --rows 1x512,1x1024,2x512 --variants $V
named_gpu_tests 200 tests/test_kernels_decode_attention.py tests/test_gpu_e2e.py
echo "done at ${SECONDS}s"
