#!/usr/bin/env bash
# Session 9, call 8: the tensor-core bulk's tiles loading the u fold's scales / mins (pf 1) and the value code
# words (pf 2) before the key phase, at register caps 128 / 168 / 255. The mma GPU tests, then variants.
#   OUT=dir bash benchmarks/device_round13f.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-270}
kernel_tests "mma" 100
sweep 8x32768,64x4096,128x4096,16x16384 packed,mma_w2,mma_pf1,mma_pf2,mma_pf1_r168,mma_pf2_r168,mma_pf2_r255 160
echo "done at ${SECONDS}s"
