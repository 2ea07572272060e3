#!/usr/bin/env bash
# Session 17, last call: the GQA kernel's GPU tests at the lazy rescaling's threshold of 2.
#   OUT=dir LIMIT=s bash benchmarks/device_round50.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-200}
named_gpu_tests 190 tests/test_kernels_decode_attention_gqa.py tests/test_gpu_e2e.py
echo "done at ${SECONDS}s"
