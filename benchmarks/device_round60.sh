#!/usr/bin/env bash
# Session 19, fifth call: the one-stage rule for v1's one-wave short calls (`_v1_stages`) as "auto", against stages 3
# (what auto ran before); Llama-2's three-wave rows at tiles of 64 / 32 and 1 / 2 stages; then the decode-attention
# file's GPU tests.
#   OUT=dir LIMIT=s bash benchmarks/device_round60.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-480}
export REPEAT=3
variants rule_7b 70 --graph --shape llama2-7b --rows 1x512,1x1024,2x512 \
    --variants auto,auto_v1st3,v1_n64_st1,v1_n32_st2
variants rule_8b 60 --graph --shape llama3.1-8b --rows 1x512,1x1024,1x2048 --variants auto,auto_v1st3
variants rule_70b 30 --graph --shape llama3.1-70b --rows 1x512,1x1024 --variants auto,auto_v1st3
named_gpu_tests 280 tests/test_kernels_decode_attention.py
echo "done at ${SECONDS}s"
