#!/usr/bin/env bash
# A re-check of the final commit on the GPU: the GPU tests of kernels, quant-pack, static step, engine and
# end to end (device_env.sh's gpu_tests), nothing else.
#   OUT=dir bash benchmarks/device_recheck.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-220}
gpu_tests 210
