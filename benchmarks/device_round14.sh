#!/usr/bin/env bash
# Next session's first call (branch mma-shfl): the tensor-core bulk with its value operand by shuffles from
# the key lanes (mma_shfl; no scratch row, no fold pass, no barrier a tile). Its GPU tests, then the variants
# against the default (mma, 2 warps) and the packed path.
#   OUT=dir bash benchmarks/device_round14.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-400}
kernel_tests "mma" 200
sweep 8x32768,64x4096,128x4096,16x16384,1x32768 packed,mma_w2,mma_sh,mma_sh_r168,mma_sh_w1,mma_sh_w4 180
echo "done at ${SECONDS}s"
