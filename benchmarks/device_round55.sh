#!/usr/bin/env bash
# Session 18, last call: the final defaults (PDL with the first launch; v1's short-call tiles at one wave of 3
# programs an SM; the compact loads removed) on batch-1/2 rows from CUDA graphs, both shapes; then the GQA kernel
# file's GPU tests.
#   OUT=dir LIMIT=s bash benchmarks/device_round55.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-290}
export REPEAT=2
variants final_8b 60 --graph --shape llama3.1-8b --rows 1x512,1x1024,1x2048,1x4096,1x32768,2x16384 --variants auto
variants final_7b 40 --graph --shape llama2-7b --rows 1x512,1x2048,1x32768 --variants auto
named_gpu_tests 180 tests/test_kernels_decode_attention_gqa.py
echo "done at ${SECONDS}s"
