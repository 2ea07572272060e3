#!/usr/bin/env bash
# Session 9, call 3: the tensor-core bulk with each block's loads issued at once (eight 16-byte loads a
# lane, not eight dependent steps), one or two blocks of 8 word rows a warp a tile. GPU tests, then variants.
#   OUT=dir bash benchmarks/device_round13b.sh
source "$(dirname "$0")/device_env.sh"
LIMIT=${LIMIT:-500}
kernel_tests "mma" 120
sweep 8x32768,64x4096,128x4096,16x16384,1x32768 packed,mma,mma_r168,mma_w2,mma2,mma2_r168,mma2_r200,mma2_w2_r168,mma2_S2x_r168 330
echo "done at ${SECONDS}s"
