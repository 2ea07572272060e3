#!/usr/bin/env bash
# Session 19, last call: the final short-call rules as "auto" (tiles halved only where the halved programs fit a wave;
# one pipelining stage for every one-tile program), batch 1-2 rows of the three shapes, from CUDA graphs; then the
# decode-attention file's GPU tests.
#   OUT=dir LIMIT=s bash benchmarks/device_round61.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-380}
export REPEAT=2
variants final_7b 40 --graph --shape llama2-7b --rows 1x512,1x1024,2x512 --variants auto,auto_v1st3
variants final_8b 40 --graph --shape llama3.1-8b --rows 1x512,1x1024,1x2048,1x4096 --variants auto
variants final_70b 30 --graph --shape llama3.1-70b --rows 1x512,1x1024 --variants auto
named_gpu_tests 240 tests/test_kernels_decode_attention.py
echo "done at ${SECONDS}s"
